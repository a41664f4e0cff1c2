//! KServe v2 tensors ⇄ ndarray: decodes a request's input against a model's signature
//! (FP32, or FP64/INT32/INT64 converted when lossless; typed or raw) and encodes outputs,
//! typed or raw (raw when the request came raw, as Triton does).

use bytes::Bytes;
use modelplane_model::{Output, OutputData, Signature};
use modelplane_proto::inference::model_infer_request::InferInputTensor;
use modelplane_proto::inference::{
    InferTensorContents, ModelInferRequest, ModelInferResponse,
    model_infer_response::InferOutputTensor,
};
use ndarray::Array2;

use crate::Error;

/// Decodes the single FP32 input `[rows, features]` a model's signature asks for.
pub fn decode_input(
    request: &ModelInferRequest,
    signature: &Signature,
) -> Result<Array2<f32>, Error> {
    let Some(spec) = signature.inputs.first() else {
        return Err(Error::Internal("model signature has no input".into()));
    };
    let features = spec.shape.get(1).copied().unwrap_or(-1);
    if request.inputs.len() != 1 {
        return Err(Error::InvalidArgument(format!(
            "model expects exactly 1 input ({:?}); got {}",
            spec.name,
            request.inputs.len()
        )));
    }
    let input = &request.inputs[0];
    if input.name != spec.name {
        return Err(Error::InvalidArgument(format!(
            "unexpected input {:?}; model expects input {:?}",
            input.name, spec.name
        )));
    }
    let shape_ok = input.shape.len() == 2
        && input.shape[0] >= 0
        && (features < 0 || input.shape[1] == features);
    if !shape_ok {
        return Err(Error::InvalidArgument(format!(
            "input {:?} has shape {:?}; expected [-1, {features}] (rows, features)",
            input.name, input.shape
        )));
    }
    let rows = input.shape[0] as usize;
    let columns = input.shape[1] as usize;
    let expected = rows.checked_mul(columns).ok_or_else(|| {
        Error::InvalidArgument(format!("input shape {:?} is too large", input.shape))
    })?;
    if !request.raw_input_contents.is_empty()
        && request.raw_input_contents.len() != request.inputs.len()
    {
        return Err(Error::InvalidArgument(format!(
            "{} raw_input_contents for {} inputs; send one per input or none",
            request.raw_input_contents.len(),
            request.inputs.len()
        )));
    }
    let values = to_fp32(
        input,
        request.raw_input_contents.first().map(|raw| raw.as_ref()),
        expected,
    )?;
    Array2::from_shape_vec((rows, columns), values).map_err(|err| Error::Internal(err.to_string()))
}

/// Largest integer every value up to which FP32 holds exactly (2^24).
const FP32_EXACT_INT: i64 = 1 << 24;

fn count_error(input: &InferInputTensor, found: usize, unit: &str, expected: usize) -> Error {
    Error::InvalidArgument(format!(
        "input {:?} has {found} {unit}; shape {:?} of {} needs {expected}",
        input.name, input.shape, input.datatype
    ))
}

fn inexact(input: &InferInputTensor, index: usize, value: impl std::fmt::Display) -> Error {
    Error::InvalidArgument(format!(
        "input {:?} ({}) value {value} at index {index} cannot be represented exactly in FP32; send FP32",
        input.name, input.datatype
    ))
}

/// Reads an input's `expected` values as FP32 from typed contents or its raw bytes.
/// FP64, INT32 and INT64 are converted when every value converts exactly.
fn to_fp32(
    input: &InferInputTensor,
    raw: Option<&[u8]>,
    expected: usize,
) -> Result<Vec<f32>, Error> {
    let typed = input.contents.clone().unwrap_or_default();
    let width = match input.datatype.as_str() {
        "FP32" | "INT32" => 4,
        "FP64" | "INT64" => 8,
        other => {
            return Err(Error::InvalidArgument(format!(
                "input {:?} has datatype {other}; expected FP32 (FP64, INT32 and INT64 are converted when lossless)",
                input.name
            )));
        }
    };
    if let Some(raw) = raw {
        let has_typed = !(typed.fp32_contents.is_empty()
            && typed.fp64_contents.is_empty()
            && typed.int_contents.is_empty()
            && typed.int64_contents.is_empty());
        if has_typed {
            return Err(Error::InvalidArgument(format!(
                "input {:?} carries both typed contents and raw_input_contents; send one",
                input.name
            )));
        }
        if raw.len() != expected * width {
            return Err(count_error(input, raw.len(), "raw bytes", expected * width));
        }
    }
    let words4 = |raw: &[u8]| -> Vec<[u8; 4]> {
        raw.chunks_exact(4)
            .map(|b| [b[0], b[1], b[2], b[3]])
            .collect()
    };
    let words8 = |raw: &[u8]| -> Vec<[u8; 8]> {
        raw.chunks_exact(8)
            .map(|b| [b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
            .collect()
    };
    let values: Vec<f32> = match (input.datatype.as_str(), raw) {
        ("FP32", Some(raw)) => words4(raw).into_iter().map(f32::from_le_bytes).collect(),
        ("FP32", None) => typed.fp32_contents,
        ("FP64", _) => {
            let wide = match raw {
                Some(raw) => words8(raw).into_iter().map(f64::from_le_bytes).collect(),
                None => typed.fp64_contents,
            };
            wide.iter()
                .enumerate()
                .map(|(i, v)| {
                    let narrow = *v as f32;
                    if f64::from(narrow) == *v {
                        Ok(narrow)
                    } else {
                        Err(inexact(input, i, v))
                    }
                })
                .collect::<Result<_, _>>()?
        }
        (_, _) => {
            let ints: Vec<i64> = match (input.datatype.as_str(), raw) {
                ("INT32", Some(raw)) => words4(raw)
                    .into_iter()
                    .map(|w| i64::from(i32::from_le_bytes(w)))
                    .collect(),
                ("INT32", None) => typed.int_contents.into_iter().map(i64::from).collect(),
                (_, Some(raw)) => words8(raw).into_iter().map(i64::from_le_bytes).collect(),
                (_, None) => typed.int64_contents,
            };
            ints.iter()
                .enumerate()
                .map(|(i, v)| {
                    if v.abs() <= FP32_EXACT_INT {
                        Ok(*v as f32)
                    } else {
                        Err(inexact(input, i, v))
                    }
                })
                .collect::<Result<_, _>>()?
        }
    };
    if values.len() != expected {
        return Err(count_error(input, values.len(), "values", expected));
    }
    Ok(values)
}

/// Checks requested output names against the signature before any compute.
pub fn check_requested_outputs(
    request: &ModelInferRequest,
    signature: &Signature,
) -> Result<(), Error> {
    for requested in &request.outputs {
        if !signature.outputs.iter().any(|o| o.name == requested.name) {
            let known: Vec<&str> = signature.outputs.iter().map(|o| o.name.as_str()).collect();
            return Err(Error::InvalidArgument(format!(
                "unknown output {:?}; model outputs are {known:?}",
                requested.name
            )));
        }
    }
    Ok(())
}

/// Builds the response: the requested outputs (all when none were named).
pub fn encode_response(
    request: &ModelInferRequest,
    model: &str,
    version: u64,
    outputs: Vec<Output>,
) -> ModelInferResponse {
    let raw = !request.raw_input_contents.is_empty();
    let wanted =
        |name: &str| request.outputs.is_empty() || request.outputs.iter().any(|o| o.name == name);
    let mut response = ModelInferResponse {
        model_name: model.to_owned(),
        model_version: version.to_string(),
        id: request.id.clone(),
        ..Default::default()
    };
    for output in outputs.into_iter().filter(|o| wanted(&o.name)) {
        let datatype = match output.data {
            OutputData::F32(_) => "FP32",
            OutputData::Bytes(_) => "BYTES",
        };
        let mut tensor = InferOutputTensor {
            name: output.name,
            datatype: datatype.into(),
            shape: output.shape.iter().map(|d| *d as i64).collect(),
            ..Default::default()
        };
        match (output.data, raw) {
            (OutputData::F32(values), true) => {
                let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
                response.raw_output_contents.push(Bytes::from(bytes));
            }
            (OutputData::F32(values), false) => {
                tensor.contents = Some(InferTensorContents {
                    fp32_contents: values,
                    ..Default::default()
                });
            }
            (OutputData::Bytes(elements), true) => {
                // Raw BYTES: each element is a 4-byte little-endian length, then its bytes.
                let mut bytes = Vec::with_capacity(elements.iter().map(|e| e.len() + 4).sum());
                for element in &elements {
                    bytes.extend_from_slice(&(element.len() as u32).to_le_bytes());
                    bytes.extend_from_slice(element);
                }
                response.raw_output_contents.push(Bytes::from(bytes));
            }
            (OutputData::Bytes(elements), false) => {
                tensor.contents = Some(InferTensorContents {
                    bytes_contents: elements,
                    ..Default::default()
                });
            }
        }
        response.outputs.push(tensor);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use modelplane_model::{Head, Model};

    fn request(datatype: &str, shape: Vec<i64>, values: Vec<f32>, raw: bool) -> ModelInferRequest {
        let mut request = ModelInferRequest {
            model_name: "m".into(),
            inputs: vec![InferInputTensor {
                name: "input".into(),
                datatype: datatype.into(),
                shape,
                ..Default::default()
            }],
            ..Default::default()
        };
        if raw {
            request.raw_input_contents.push(Bytes::from(
                values
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect::<Vec<u8>>(),
            ));
        } else {
            request.inputs[0].contents = Some(InferTensorContents {
                fp32_contents: values,
                ..Default::default()
            });
        }
        request
    }

    #[test]
    fn typed_and_raw_decode_to_the_same_rows() {
        let signature = Model::signature_for(Head::Identity, 2, 0);
        let values = vec![1.0, 2.0, 3.0, 4.0];
        let typed = decode_input(
            &request("FP32", vec![2, 2], values.clone(), false),
            &signature,
        )
        .expect("typed");
        let raw =
            decode_input(&request("FP32", vec![2, 2], values, true), &signature).expect("raw");
        assert_eq!(typed, raw);
        assert_eq!(typed.row(1).to_vec(), vec![3.0, 4.0]);
    }

    #[test]
    fn wrong_dtype_shape_and_count_are_named() {
        let signature = Model::signature_for(Head::Identity, 2, 0);
        let err = decode_input(
            &request("BYTES", vec![1, 2], vec![1.0, 2.0], false),
            &signature,
        )
        .expect_err("dtype");
        assert_eq!(
            err.to_string(),
            "input \"input\" has datatype BYTES; expected FP32 (FP64, INT32 and INT64 are converted when lossless)"
        );
        let err = decode_input(
            &request("FP32", vec![1, 3], vec![1.0, 2.0, 3.0], false),
            &signature,
        )
        .expect_err("shape");
        assert_eq!(
            err.to_string(),
            "input \"input\" has shape [1, 3]; expected [-1, 2] (rows, features)"
        );
        let err = decode_input(
            &request("FP32", vec![2, 2], vec![1.0, 2.0], false),
            &signature,
        )
        .expect_err("count");
        assert!(err.to_string().contains("needs 4"), "{err}");
    }

    #[test]
    fn wider_types_convert_only_when_exact() {
        let signature = Model::signature_for(Head::Identity, 2, 0);
        let mut exact = request("FP64", vec![1, 2], vec![], false);
        exact.inputs[0].contents = Some(InferTensorContents {
            fp64_contents: vec![1.5, -2.0],
            ..Default::default()
        });
        assert_eq!(
            decode_input(&exact, &signature)
                .expect("exact")
                .row(0)
                .to_vec(),
            vec![1.5, -2.0]
        );

        let mut inexact = request("FP64", vec![1, 2], vec![], false);
        inexact.raw_input_contents.push(Bytes::from(
            [0.1f64, 1.0]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect::<Vec<u8>>(),
        ));
        let err = decode_input(&inexact, &signature).expect_err("0.1 is not exact in FP32");
        assert!(
            err.to_string()
                .contains("value 0.1 at index 0 cannot be represented exactly"),
            "{err}"
        );

        let mut ints = request("INT64", vec![1, 2], vec![], false);
        ints.raw_input_contents.push(Bytes::from(
            [7i64, -3]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect::<Vec<u8>>(),
        ));
        assert_eq!(
            decode_input(&ints, &signature)
                .expect("small ints")
                .row(0)
                .to_vec(),
            vec![7.0, -3.0]
        );
        let mut big = request("INT32", vec![1, 2], vec![], false);
        big.inputs[0].contents = Some(InferTensorContents {
            int_contents: vec![1, 1 << 25],
            ..Default::default()
        });
        assert!(decode_input(&big, &signature).is_err());
    }
}
