//! KServe v2 tensors ⇄ ndarray: decodes a request's input against a model's signature
//! and encodes outputs, typed or raw (raw when the request came raw, as Triton does).

use bytes::Bytes;
use modelplane_model::{Output, Signature};
use modelplane_proto::inference::{
    InferTensorContents, ModelInferRequest, ModelInferResponse,
    model_infer_response::InferOutputTensor,
};
use ndarray::Array2;

use crate::Error;

/// Decodes the single FP32 input `[rows, features]` a model's signature asks for.
pub fn decode_input(request: &ModelInferRequest, signature: &Signature) -> Result<Array2<f32>, Error> {
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
    if input.datatype != spec.datatype {
        return Err(Error::InvalidArgument(format!(
            "input {:?} has datatype {}; expected {}",
            input.name, input.datatype, spec.datatype
        )));
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
    let values: Vec<f32> = if let Some(raw) = request.raw_input_contents.first() {
        if input.contents.as_ref().is_some_and(|c| !c.fp32_contents.is_empty()) {
            return Err(Error::InvalidArgument(
                "input carries both typed contents and raw_input_contents; send one".into(),
            ));
        }
        if raw.len() != expected * 4 {
            return Err(Error::InvalidArgument(format!(
                "raw input {:?} has {} bytes; shape {:?} of FP32 needs {}",
                input.name,
                raw.len(),
                input.shape,
                expected * 4
            )));
        }
        raw.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
    } else {
        let values = input.contents.as_ref().map(|c| c.fp32_contents.clone()).unwrap_or_default();
        if values.len() != expected {
            return Err(Error::InvalidArgument(format!(
                "input {:?} has {} fp32_contents values; shape {:?} needs {expected}",
                input.name,
                values.len(),
                input.shape
            )));
        }
        values
    };
    Array2::from_shape_vec((rows, columns), values).map_err(|err| Error::Internal(err.to_string()))
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
        let mut tensor = InferOutputTensor {
            name: output.name,
            datatype: "FP32".into(),
            shape: output.shape.iter().map(|d| *d as i64).collect(),
            ..Default::default()
        };
        if raw {
            let bytes: Vec<u8> = output.values.iter().flat_map(|v| v.to_le_bytes()).collect();
            response.raw_output_contents.push(Bytes::from(bytes));
        } else {
            tensor.contents = Some(InferTensorContents { fp32_contents: output.values, ..Default::default() });
        }
        response.outputs.push(tensor);
    }
    response
}

#[cfg(test)]
mod tests {
    use modelplane_model::{Model, ModelKind};
    use modelplane_proto::inference::model_infer_request::InferInputTensor;

    use super::*;

    fn request(datatype: &str, shape: Vec<i64>, values: Vec<f32>, raw: bool) -> ModelInferRequest {
        let mut request = ModelInferRequest {
            model_name: "m".into(),
            inputs: vec![InferInputTensor { name: "input".into(), datatype: datatype.into(), shape, ..Default::default() }],
            ..Default::default()
        };
        if raw {
            request.raw_input_contents.push(Bytes::from(values.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()));
        } else {
            request.inputs[0].contents = Some(InferTensorContents { fp32_contents: values, ..Default::default() });
        }
        request
    }

    #[test]
    fn typed_and_raw_decode_to_the_same_rows() {
        let signature = Model::signature_for(ModelKind::LinearRegression, 2);
        let values = vec![1.0, 2.0, 3.0, 4.0];
        let typed = decode_input(&request("FP32", vec![2, 2], values.clone(), false), &signature).expect("typed");
        let raw = decode_input(&request("FP32", vec![2, 2], values, true), &signature).expect("raw");
        assert_eq!(typed, raw);
        assert_eq!(typed.row(1).to_vec(), vec![3.0, 4.0]);
    }

    #[test]
    fn wrong_dtype_shape_and_count_are_named() {
        let signature = Model::signature_for(ModelKind::LinearRegression, 2);
        let err = decode_input(&request("FP64", vec![1, 2], vec![1.0, 2.0], false), &signature).expect_err("dtype");
        assert_eq!(err.to_string(), "input \"input\" has datatype FP64; expected FP32");
        let err = decode_input(&request("FP32", vec![1, 3], vec![1.0, 2.0, 3.0], false), &signature).expect_err("shape");
        assert_eq!(err.to_string(), "input \"input\" has shape [1, 3]; expected [-1, 2] (rows, features)");
        let err = decode_input(&request("FP32", vec![2, 2], vec![1.0, 2.0], false), &signature).expect_err("count");
        assert!(err.to_string().contains("needs 4"), "{err}");
    }
}
