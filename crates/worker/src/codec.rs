//! KServe v2 tensors ⇄ ndarray: decodes a request's input against a model's signature
//! (FP32, or FP64/INT32/INT64 converted when lossless; BYTES texts for text models; typed
//! or raw) and encodes outputs,
//! typed or raw (raw when the request came raw, as Triton does).

use bytes::Bytes;
use modelplane_model::{Output, OutputData, Signature};
use modelplane_proto::inference::model_infer_request::InferInputTensor;
use modelplane_proto::inference::{
    InferTensorContents, ModelInferRequest, ModelInferResponse, model_infer_response::InferOutputTensor,
};
use ndarray::Array2;

use crate::Error;

/// A request's input, decoded for the model.
#[derive(Debug)]
pub enum Decoded {
    /// FP32 rows for a numeric model.
    Features(Array2<f32>),
    /// One text per row for a text model.
    Texts(Vec<Vec<u8>>),
    /// One FP32 tensor (shape, values) per input, in signature order, for ONNX graphs.
    Tensors(Vec<(Vec<usize>, Vec<f32>)>),
}

/// Decodes every input an ONNX graph's signature names, matched by name, converted to
/// FP32 where lossless. Ranks and fixed dimensions are checked by the graph.
pub fn decode_tensors(
    request: &ModelInferRequest,
    signature: &Signature,
) -> Result<Vec<(Vec<usize>, Vec<f32>)>, Error> {
    let expected: Vec<&str> = signature.inputs.iter().map(|s| s.name.as_str()).collect();
    if let Some(unknown) = request.inputs.iter().find(|i| !expected.contains(&i.name.as_str())) {
        return Err(Error::InvalidArgument(format!(
            "unexpected input {:?}; model inputs are {expected:?}",
            unknown.name
        )));
    }
    if !request.raw_input_contents.is_empty() && request.raw_input_contents.len() != request.inputs.len() {
        return Err(Error::InvalidArgument(format!(
            "{} raw_input_contents for {} inputs; send one per input or none",
            request.raw_input_contents.len(),
            request.inputs.len()
        )));
    }
    signature
        .inputs
        .iter()
        .map(|spec| {
            let index = request.inputs.iter().position(|i| i.name == spec.name).ok_or_else(|| {
                Error::InvalidArgument(format!("missing input {:?}; model inputs are {expected:?}", spec.name))
            })?;
            let input = &request.inputs[index];
            if input.shape.iter().any(|d| *d < 0) {
                return Err(Error::InvalidArgument(format!(
                    "input {:?} has negative dimensions {:?}",
                    input.name, input.shape
                )));
            }
            let shape: Vec<usize> = input.shape.iter().map(|d| *d as usize).collect();
            let count = shape.iter().try_fold(1usize, |acc, d| acc.checked_mul(*d)).ok_or_else(|| {
                Error::InvalidArgument(format!("input {:?} shape {:?} is too large", input.name, input.shape))
            })?;
            let raw = request.raw_input_contents.get(index).map(|raw| raw.as_ref());
            Ok((shape, to_fp32(input, raw, count)?))
        })
        .collect()
}

/// Decodes the single input a model's signature asks for: FP32 `[rows, features]` (or a
/// lossless wider type), or BYTES `[rows]` (or `[rows, 1]`) for text models.
pub fn decode_input(request: &ModelInferRequest, signature: &Signature) -> Result<Decoded, Error> {
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
    if !request.raw_input_contents.is_empty() && request.raw_input_contents.len() != request.inputs.len() {
        return Err(Error::InvalidArgument(format!(
            "{} raw_input_contents for {} inputs; send one per input or none",
            request.raw_input_contents.len(),
            request.inputs.len()
        )));
    }
    if spec.datatype == "BYTES" {
        return decode_texts(input, request.raw_input_contents.first().map(|raw| raw.as_ref())).map(Decoded::Texts);
    }
    let shape_ok = input.shape.len() == 2 && input.shape[0] >= 0 && (features < 0 || input.shape[1] == features);
    if !shape_ok {
        return Err(Error::InvalidArgument(format!(
            "input {:?} has shape {:?}; expected [-1, {features}] (rows, features)",
            input.name, input.shape
        )));
    }
    let rows = input.shape[0] as usize;
    let columns = input.shape[1] as usize;
    let expected = rows
        .checked_mul(columns)
        .ok_or_else(|| Error::InvalidArgument(format!("input shape {:?} is too large", input.shape)))?;
    if !request.raw_input_contents.is_empty() && request.raw_input_contents.len() != request.inputs.len() {
        return Err(Error::InvalidArgument(format!(
            "{} raw_input_contents for {} inputs; send one per input or none",
            request.raw_input_contents.len(),
            request.inputs.len()
        )));
    }
    let values = to_fp32(input, request.raw_input_contents.first().map(|raw| raw.as_ref()), expected)?;
    Array2::from_shape_vec((rows, columns), values)
        .map(Decoded::Features)
        .map_err(|err| Error::Internal(err.to_string()))
}

/// BYTES elements of a text input: typed `bytes_contents`, or raw elements each
/// prefixed by a 4-byte little-endian length.
fn decode_texts(input: &InferInputTensor, raw: Option<&[u8]>) -> Result<Vec<Vec<u8>>, Error> {
    if input.datatype != "BYTES" {
        return Err(Error::InvalidArgument(format!(
            "input {:?} has datatype {}; expected BYTES (one text per row)",
            input.name, input.datatype
        )));
    }
    let rows = match input.shape.as_slice() {
        [rows] | [rows, 1] if *rows >= 0 => *rows as usize,
        _ => {
            return Err(Error::InvalidArgument(format!(
                "input {:?} has shape {:?}; expected [-1] or [-1, 1] (one text per row)",
                input.name, input.shape
            )));
        }
    };
    let texts = match raw {
        Some(mut raw) => {
            let mut texts = Vec::with_capacity(rows);
            while !raw.is_empty() {
                let Some((length, rest)) = raw.split_first_chunk::<4>() else {
                    return Err(Error::InvalidArgument(format!(
                        "raw BYTES input {:?} ends inside a length prefix after {} elements",
                        input.name,
                        texts.len()
                    )));
                };
                let length = u32::from_le_bytes(*length) as usize;
                if rest.len() < length {
                    return Err(Error::InvalidArgument(format!(
                        "raw BYTES element {} of input {:?} declares {length} bytes but {} remain",
                        texts.len(),
                        input.name,
                        rest.len()
                    )));
                }
                texts.push(rest[..length].to_vec());
                raw = &rest[length..];
            }
            texts
        }
        None => input.contents.as_ref().map(|c| c.bytes_contents.clone()).unwrap_or_default(),
    };
    if texts.len() != rows {
        return Err(count_error(input, texts.len(), "texts", rows));
    }
    Ok(texts)
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
fn to_fp32(input: &InferInputTensor, raw: Option<&[u8]>, expected: usize) -> Result<Vec<f32>, Error> {
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
    let words4 = |raw: &[u8]| -> Vec<[u8; 4]> { raw.chunks_exact(4).map(|b| [b[0], b[1], b[2], b[3]]).collect() };
    let words8 = |raw: &[u8]| -> Vec<[u8; 8]> {
        raw.chunks_exact(8).map(|b| [b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]).collect()
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
                    if f64::from(narrow) == *v { Ok(narrow) } else { Err(inexact(input, i, v)) }
                })
                .collect::<Result<_, _>>()?
        }
        (_, _) => {
            let ints: Vec<i64> = match (input.datatype.as_str(), raw) {
                ("INT32", Some(raw)) => words4(raw).into_iter().map(|w| i64::from(i32::from_le_bytes(w))).collect(),
                ("INT32", None) => typed.int_contents.into_iter().map(i64::from).collect(),
                (_, Some(raw)) => words8(raw).into_iter().map(i64::from_le_bytes).collect(),
                (_, None) => typed.int64_contents,
            };
            ints.iter()
                .enumerate()
                .map(|(i, v)| if v.abs() <= FP32_EXACT_INT { Ok(*v as f32) } else { Err(inexact(input, i, v)) })
                .collect::<Result<_, _>>()?
        }
    };
    if values.len() != expected {
        return Err(count_error(input, values.len(), "values", expected));
    }
    Ok(values)
}

/// Checks requested output names against the signature before any compute.
pub fn check_requested_outputs(request: &ModelInferRequest, signature: &Signature) -> Result<(), Error> {
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
    let wanted = |name: &str| request.outputs.is_empty() || request.outputs.iter().any(|o| o.name == name);
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
                tensor.contents = Some(InferTensorContents { fp32_contents: values, ..Default::default() });
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
                tensor.contents = Some(InferTensorContents { bytes_contents: elements, ..Default::default() });
            }
        }
        response.outputs.push(tensor);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use modelplane_model::{Head, InputKind, Model};

    fn features(decoded: Decoded) -> Array2<f32> {
        match decoded {
            Decoded::Features(x) => x,
            other => panic!("expected features, got {other:?}"),
        }
    }

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
            request
                .raw_input_contents
                .push(Bytes::from(values.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()));
        } else {
            request.inputs[0].contents = Some(InferTensorContents { fp32_contents: values, ..Default::default() });
        }
        request
    }

    #[test]
    fn typed_and_raw_decode_to_the_same_rows() {
        let signature = Model::signature_for(Head::Identity, InputKind::Features(2), 0);
        let values = vec![1.0, 2.0, 3.0, 4.0];
        let typed = decode_input(&request("FP32", vec![2, 2], values.clone(), false), &signature).expect("typed");
        let typed = features(typed);
        let raw = decode_input(&request("FP32", vec![2, 2], values, true), &signature).expect("raw");
        let raw = features(raw);
        assert_eq!(typed, raw);
        assert_eq!(typed.row(1).to_vec(), vec![3.0, 4.0]);
    }

    #[test]
    fn wrong_dtype_shape_and_count_are_named() {
        let signature = Model::signature_for(Head::Identity, InputKind::Features(2), 0);
        let err = decode_input(&request("BYTES", vec![1, 2], vec![1.0, 2.0], false), &signature).expect_err("dtype");
        assert_eq!(
            err.to_string(),
            "input \"input\" has datatype BYTES; expected FP32 (FP64, INT32 and INT64 are converted when lossless)"
        );
        let err =
            decode_input(&request("FP32", vec![1, 3], vec![1.0, 2.0, 3.0], false), &signature).expect_err("shape");
        assert_eq!(err.to_string(), "input \"input\" has shape [1, 3]; expected [-1, 2] (rows, features)");
        let err = decode_input(&request("FP32", vec![2, 2], vec![1.0, 2.0], false), &signature).expect_err("count");
        assert!(err.to_string().contains("needs 4"), "{err}");
    }

    #[test]
    fn text_inputs_decode_typed_and_raw() {
        let signature = Model::signature_for(Head::Softmax, InputKind::Text, 3);
        let mut typed = request("BYTES", vec![2], vec![], false);
        typed.inputs[0].name = "text".into();
        typed.inputs[0].contents = Some(InferTensorContents {
            bytes_contents: vec![b"hi there".to_vec(), b"".to_vec()],
            ..Default::default()
        });
        let mut raw = typed.clone();
        raw.inputs[0].contents = None;
        raw.raw_input_contents.push(Bytes::from([&8u32.to_le_bytes()[..], b"hi there", &0u32.to_le_bytes()].concat()));
        for request in [typed, raw.clone()] {
            match decode_input(&request, &signature).expect("texts") {
                Decoded::Texts(texts) => assert_eq!(texts, vec![b"hi there".to_vec(), Vec::new()]),
                other => panic!("expected texts, got {other:?}"),
            }
        }
        raw.raw_input_contents[0] = Bytes::from([&9u32.to_le_bytes()[..], b"hi there"].concat());
        let err = decode_input(&raw, &signature).expect_err("truncated");
        assert!(err.to_string().contains("declares 9 bytes but 8 remain"), "{err}");
        let mut numbers = request("FP32", vec![1, 2], vec![1.0, 2.0], false);
        numbers.inputs[0].name = "text".into();
        let err = decode_input(&numbers, &signature).expect_err("numbers for a text model");
        assert!(err.to_string().contains("expected BYTES"), "{err}");
    }

    #[test]
    fn onnx_inputs_match_by_name_and_keep_their_shape() {
        let spec = |name: &str| modelplane_model::TensorSpec {
            name: name.into(),
            datatype: "FP32".into(),
            shape: vec![-1, 2],
        };
        let signature = modelplane_model::Signature { inputs: vec![spec("a"), spec("b")], outputs: Vec::new() };
        let mut request = request("FP32", vec![1, 2], vec![1.0, 2.0], false);
        request.inputs[0].name = "b".into();
        let err = decode_tensors(&request, &signature).expect_err("a is missing");
        assert!(err.to_string().contains("missing input \"a\""), "{err}");
        let mut second = request.inputs[0].clone();
        second.name = "a".into();
        second.shape = vec![2, 1];
        second.contents = Some(InferTensorContents { fp32_contents: vec![3.0, 4.0], ..Default::default() });
        request.inputs.push(second);
        let tensors = decode_tensors(&request, &signature).expect("both");
        assert_eq!(tensors, vec![(vec![2, 1], vec![3.0, 4.0]), (vec![1, 2], vec![1.0, 2.0])]);
    }

    #[test]
    fn wider_types_convert_only_when_exact() {
        let signature = Model::signature_for(Head::Identity, InputKind::Features(2), 0);
        let mut exact = request("FP64", vec![1, 2], vec![], false);
        exact.inputs[0].contents = Some(InferTensorContents { fp64_contents: vec![1.5, -2.0], ..Default::default() });
        assert_eq!(features(decode_input(&exact, &signature).expect("exact")).row(0).to_vec(), vec![1.5, -2.0]);

        let mut inexact = request("FP64", vec![1, 2], vec![], false);
        inexact
            .raw_input_contents
            .push(Bytes::from([0.1f64, 1.0].iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()));
        let err = decode_input(&inexact, &signature).expect_err("0.1 is not exact in FP32");
        assert!(err.to_string().contains("value 0.1 at index 0 cannot be represented exactly"), "{err}");

        let mut ints = request("INT64", vec![1, 2], vec![], false);
        ints.raw_input_contents.push(Bytes::from([7i64, -3].iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()));
        assert_eq!(features(decode_input(&ints, &signature).expect("small ints")).row(0).to_vec(), vec![7.0, -3.0]);
        let mut big = request("INT32", vec![1, 2], vec![], false);
        big.inputs[0].contents = Some(InferTensorContents { int_contents: vec![1, 1 << 25], ..Default::default() });
        assert!(decode_input(&big, &signature).is_err());
    }
}
