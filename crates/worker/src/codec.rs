//! KServe v2 tensors ⇄ ndarray: decodes a request's input against a model's signature
//! (FP32, or any other numeric V2 datatype converted when exact; BYTES texts for text
//! models; typed or raw) and encodes outputs, typed or raw (raw when the request came
//! raw, as Triton does).

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

/// A tensor as its shape and FP32 values, in row-major order.
pub type ShapedTensor = (Vec<usize>, Vec<f32>);

/// Decodes every input an ONNX graph's signature names, matched by name, converted to
/// FP32 where lossless. Ranks and fixed dimensions are checked by the graph.
pub fn decode_tensors(request: &ModelInferRequest, signature: &Signature) -> Result<Vec<ShapedTensor>, Error> {
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

/// Bytes per element of a numeric V2 datatype on the wire (raw contents).
fn element_width(datatype: &str) -> Option<usize> {
    Some(match datatype {
        "BOOL" | "INT8" | "UINT8" => 1,
        "INT16" | "UINT16" | "FP16" | "BF16" => 2,
        "INT32" | "UINT32" | "FP32" => 4,
        "INT64" | "UINT64" | "FP64" => 8,
        _ => return None,
    })
}

/// Values as read from the wire, before the conversion to FP32.
enum Wide {
    F32(Vec<f32>),
    F64(Vec<f64>),
    Signed(Vec<i64>),
    Unsigned(Vec<u64>),
}

fn read_raw(datatype: &str, raw: &[u8]) -> Wide {
    fn words<const N: usize>(raw: &[u8]) -> impl Iterator<Item = [u8; N]> + '_ {
        raw.chunks_exact(N).map(|chunk| {
            let mut word = [0u8; N];
            word.copy_from_slice(chunk);
            word
        })
    }
    match datatype {
        "BOOL" | "UINT8" => Wide::Unsigned(raw.iter().map(|b| u64::from(*b)).collect()),
        "INT8" => Wide::Signed(raw.iter().map(|b| i64::from(*b as i8)).collect()),
        "INT16" => Wide::Signed(words::<2>(raw).map(|w| i64::from(i16::from_le_bytes(w))).collect()),
        "UINT16" => Wide::Unsigned(words::<2>(raw).map(|w| u64::from(u16::from_le_bytes(w))).collect()),
        "INT32" => Wide::Signed(words::<4>(raw).map(|w| i64::from(i32::from_le_bytes(w))).collect()),
        "UINT32" => Wide::Unsigned(words::<4>(raw).map(|w| u64::from(u32::from_le_bytes(w))).collect()),
        "INT64" => Wide::Signed(words::<8>(raw).map(i64::from_le_bytes).collect()),
        "UINT64" => Wide::Unsigned(words::<8>(raw).map(u64::from_le_bytes).collect()),
        "FP16" => Wide::F32(words::<2>(raw).map(|w| half::f16::from_le_bytes(w).to_f32()).collect()),
        "BF16" => Wide::F32(words::<2>(raw).map(|w| half::bf16::from_le_bytes(w).to_f32()).collect()),
        "FP64" => Wide::F64(words::<8>(raw).map(f64::from_le_bytes).collect()),
        _ => Wide::F32(words::<4>(raw).map(f32::from_le_bytes).collect()),
    }
}

/// Typed contents of `input`, checked against the range of its declared datatype (the
/// protocol carries INT8/INT16 in `int_contents` and UINT8/UINT16 in `uint_contents`).
fn read_typed(input: &InferInputTensor, contents: InferTensorContents) -> Result<Wide, Error> {
    let out_of_range = |value: i128| {
        Error::InvalidArgument(format!("input {:?} value {value} does not fit {}", input.name, input.datatype))
    };
    let check = |value: i128, low: i128, high: i128| {
        if (low..=high).contains(&value) { Ok(()) } else { Err(out_of_range(value)) }
    };
    Ok(match input.datatype.as_str() {
        "BOOL" => Wide::Unsigned(contents.bool_contents.into_iter().map(u64::from).collect()),
        "INT8" | "INT16" => {
            let (low, high) = if input.datatype == "INT8" {
                (i8::MIN.into(), i8::MAX.into())
            } else {
                (i16::MIN.into(), i16::MAX.into())
            };
            for value in &contents.int_contents {
                check(i128::from(*value), low, high)?;
            }
            Wide::Signed(contents.int_contents.into_iter().map(i64::from).collect())
        }
        "INT32" => Wide::Signed(contents.int_contents.into_iter().map(i64::from).collect()),
        "INT64" => Wide::Signed(contents.int64_contents),
        "UINT8" | "UINT16" => {
            let high = if input.datatype == "UINT8" { u8::MAX.into() } else { u16::MAX.into() };
            for value in &contents.uint_contents {
                check(i128::from(*value), 0, high)?;
            }
            Wide::Unsigned(contents.uint_contents.into_iter().map(u64::from).collect())
        }
        "UINT32" => Wide::Unsigned(contents.uint_contents.into_iter().map(u64::from).collect()),
        "UINT64" => Wide::Unsigned(contents.uint64_contents),
        "FP16" | "BF16" => {
            return Err(Error::InvalidArgument(format!(
                "input {:?} is {}, which the protocol carries only in raw_input_contents (2 bytes per value)",
                input.name, input.datatype
            )));
        }
        "FP64" => Wide::F64(contents.fp64_contents),
        _ => Wide::F32(contents.fp32_contents),
    })
}

fn has_typed(contents: &InferTensorContents) -> bool {
    !(contents.bool_contents.is_empty()
        && contents.int_contents.is_empty()
        && contents.int64_contents.is_empty()
        && contents.uint_contents.is_empty()
        && contents.uint64_contents.is_empty()
        && contents.fp32_contents.is_empty()
        && contents.fp64_contents.is_empty()
        && contents.bytes_contents.is_empty())
}

/// Reads an input's `expected` values as FP32 from typed contents or its raw bytes.
/// Every numeric V2 datatype is accepted when each value converts to FP32 exactly
/// (integers up to 2^24 in magnitude, FP64 values that are FP32 values); else the answer
/// is INVALID_ARGUMENT naming the first value that does not.
fn to_fp32(input: &InferInputTensor, raw: Option<&[u8]>, expected: usize) -> Result<Vec<f32>, Error> {
    let Some(width) = element_width(&input.datatype) else {
        return Err(Error::InvalidArgument(format!(
            "input {:?} has datatype {}; expected FP32 (or BOOL, INT8-INT64, UINT8-UINT64, FP16, BF16 or FP64, \
             converted when exact)",
            input.name, input.datatype
        )));
    };
    let contents = input.contents.clone().unwrap_or_default();
    let wide = match raw {
        Some(raw) => {
            if has_typed(&contents) {
                return Err(Error::InvalidArgument(format!(
                    "input {:?} carries both typed contents and raw_input_contents; send one",
                    input.name
                )));
            }
            if raw.len() != expected * width {
                return Err(count_error(input, raw.len(), "raw bytes", expected * width));
            }
            read_raw(&input.datatype, raw)
        }
        None => read_typed(input, contents)?,
    };
    let values: Vec<f32> = match wide {
        Wide::F32(values) => values,
        Wide::F64(values) => values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let narrow = *v as f32;
                if f64::from(narrow) == *v || v.is_nan() { Ok(narrow) } else { Err(inexact(input, i, v)) }
            })
            .collect::<Result<_, _>>()?,
        Wide::Signed(values) => values
            .iter()
            .enumerate()
            .map(|(i, v)| if v.abs() <= FP32_EXACT_INT { Ok(*v as f32) } else { Err(inexact(input, i, v)) })
            .collect::<Result<_, _>>()?,
        Wide::Unsigned(values) => values
            .iter()
            .enumerate()
            .map(|(i, v)| if *v <= FP32_EXACT_INT as u64 { Ok(*v as f32) } else { Err(inexact(input, i, v)) })
            .collect::<Result<_, _>>()?,
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
            "input \"input\" has datatype BYTES; expected FP32 (or BOOL, INT8-INT64, UINT8-UINT64, FP16, BF16 or FP64, \
             converted when exact)"
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

    fn raw_request(datatype: &str, bytes: Vec<u8>) -> ModelInferRequest {
        let mut request = request(datatype, vec![1, 2], vec![], false);
        request.raw_input_contents.push(Bytes::from(bytes));
        request
    }

    #[test]
    fn every_numeric_datatype_decodes_raw() {
        let signature = Model::signature_for(Head::Identity, InputKind::Features(2), 0);
        let cases: Vec<(&str, Vec<u8>, [f32; 2])> = vec![
            ("BOOL", vec![1, 0], [1.0, 0.0]),
            ("INT8", vec![0xFF, 7], [-1.0, 7.0]),
            ("UINT8", vec![0xFF, 7], [255.0, 7.0]),
            ("INT16", [-300i16, 2].iter().flat_map(|v| v.to_le_bytes()).collect(), [-300.0, 2.0]),
            ("UINT16", [60000u16, 2].iter().flat_map(|v| v.to_le_bytes()).collect(), [60000.0, 2.0]),
            ("INT32", [-5i32, 9].iter().flat_map(|v| v.to_le_bytes()).collect(), [-5.0, 9.0]),
            ("UINT32", [5u32, 9].iter().flat_map(|v| v.to_le_bytes()).collect(), [5.0, 9.0]),
            ("INT64", [-5i64, 9].iter().flat_map(|v| v.to_le_bytes()).collect(), [-5.0, 9.0]),
            ("UINT64", [5u64, 9].iter().flat_map(|v| v.to_le_bytes()).collect(), [5.0, 9.0]),
            (
                "FP16",
                [half::f16::from_f32(1.5), half::f16::from_f32(-0.25)].iter().flat_map(|v| v.to_le_bytes()).collect(),
                [1.5, -0.25],
            ),
            (
                "BF16",
                [half::bf16::from_f32(2.0), half::bf16::from_f32(-8.0)].iter().flat_map(|v| v.to_le_bytes()).collect(),
                [2.0, -8.0],
            ),
            ("FP64", [1.5f64, -2.0].iter().flat_map(|v| v.to_le_bytes()).collect(), [1.5, -2.0]),
        ];
        for (datatype, bytes, expected) in cases {
            let rows = features(decode_input(&raw_request(datatype, bytes), &signature).expect(datatype));
            assert_eq!(rows.row(0).to_vec(), expected, "{datatype}");
        }
        let short = decode_input(&raw_request("INT16", vec![1, 0, 2]), &signature).expect_err("3 bytes for 2 INT16");
        assert!(short.to_string().contains("3 raw bytes") && short.to_string().contains("needs 4"), "{short}");
        let huge = decode_input(
            &raw_request("UINT64", [u64::MAX, 1].iter().flat_map(|v| v.to_le_bytes()).collect()),
            &signature,
        );
        assert!(huge.expect_err("2^64-1 is not exact").to_string().contains("cannot be represented exactly"));
    }

    #[test]
    fn typed_contents_are_checked_against_their_datatype() {
        let signature = Model::signature_for(Head::Identity, InputKind::Features(2), 0);
        let typed = |datatype: &str, contents: InferTensorContents| {
            let mut request = request(datatype, vec![1, 2], vec![], false);
            request.inputs[0].contents = Some(contents);
            decode_input(&request, &signature)
        };
        let bools = typed("BOOL", InferTensorContents { bool_contents: vec![true, false], ..Default::default() });
        assert_eq!(features(bools.expect("bools")).row(0).to_vec(), [1.0, 0.0]);
        let uints = typed("UINT16", InferTensorContents { uint_contents: vec![65535, 0], ..Default::default() });
        assert_eq!(features(uints.expect("uint16")).row(0).to_vec(), [65535.0, 0.0]);
        let err = typed("INT8", InferTensorContents { int_contents: vec![200, 0], ..Default::default() })
            .expect_err("200 is not an INT8");
        assert!(err.to_string().contains("value 200 does not fit INT8"), "{err}");
        let err = typed("FP16", InferTensorContents { fp32_contents: vec![1.0, 2.0], ..Default::default() })
            .expect_err("FP16 has no typed field");
        assert!(err.to_string().contains("only in raw_input_contents"), "{err}");
        let err = typed("STRING", InferTensorContents::default()).expect_err("unknown type");
        assert!(err.to_string().contains("has datatype STRING; expected FP32"), "{err}");
    }
}
