//! KServe v2 tensors ⇄ ndarray: decodes a request's input against a model's signature
//! (FP32, or any other numeric V2 datatype converted when exact; BYTES texts for text
//! models; typed or raw) and encodes outputs, typed or raw (raw when the request came
//! raw, as Triton does).

use bytes::Bytes;
use modelplane_model::{Output, Signature, TensorData};
use modelplane_onnx::ShapedTensor;
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
    /// One tensor (shape, values) per input, in signature order and of the datatype the
    /// signature declares, for ONNX graphs.
    Tensors(Vec<ShapedTensor>),
}

/// Raw contents come one per input, or not at all.
fn check_raw_count(request: &ModelInferRequest) -> Result<(), Error> {
    if !request.raw_input_contents.is_empty() && request.raw_input_contents.len() != request.inputs.len() {
        return Err(Error::InvalidArgument(format!(
            "{} raw_input_contents for {} inputs; send one per input or none",
            request.raw_input_contents.len(),
            request.inputs.len()
        )));
    }
    Ok(())
}

/// Decodes every input an ONNX graph's signature names, matched by name, converted to
/// the datatype the graph takes where lossless. Ranks and fixed dimensions are checked
/// by the graph.
pub fn decode_tensors(request: &ModelInferRequest, signature: &Signature) -> Result<Vec<ShapedTensor>, Error> {
    let expected: Vec<&str> = signature.inputs.iter().map(|s| s.name.as_str()).collect();
    if let Some(unknown) = request.inputs.iter().find(|i| !expected.contains(&i.name.as_str())) {
        return Err(Error::InvalidArgument(format!(
            "unexpected input {:?}; model inputs are {expected:?}",
            unknown.name
        )));
    }
    check_raw_count(request)?;
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
            Ok((shape, to_datatype(input, raw, count, &spec.datatype)?))
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
    check_raw_count(request)?;
    if spec.datatype == "BYTES" {
        return decode_texts(input, request.raw_input_contents.first().map(|raw| raw.as_ref())).map(Decoded::Texts);
    }
    let shape_ok = input.shape.len() == 2 && input.shape[0] >= 0 && (features < 0 || input.shape[1] == features);
    if !shape_ok {
        return Err(Error::InvalidArgument(format!(
            "input {:?} has shape {:?}; expected [rows, {features}] with rows 0 or more \
             (the model's metadata writes it [-1, {features}])",
            input.name, input.shape
        )));
    }
    let rows = input.shape[0] as usize;
    let columns = input.shape[1] as usize;
    let expected = rows
        .checked_mul(columns)
        .ok_or_else(|| Error::InvalidArgument(format!("input shape {:?} is too large", input.shape)))?;
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

fn inexact(input: &InferInputTensor, index: usize, value: impl std::fmt::Display, target: &str) -> Error {
    Error::InvalidArgument(format!(
        "input {:?} ({}) value {value} at index {index} cannot be represented exactly in {target}; send {target}",
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

/// Values as read from the wire, before the conversion to the model's datatype.
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

/// Reads an input's `expected` values, as sent, from typed contents or its raw bytes;
/// `target` is the datatype the model takes (for the error naming what it accepts).
fn read_values(input: &InferInputTensor, raw: Option<&[u8]>, expected: usize, target: &str) -> Result<Wide, Error> {
    let Some(width) = element_width(&input.datatype) else {
        return Err(Error::InvalidArgument(format!(
            "input {:?} has datatype {}; expected {target} (any of BOOL, INT8-INT64, UINT8-UINT64, FP16, BF16, FP32, \
             FP64 is converted when exact)",
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
    let count = match &wide {
        Wide::F32(values) => values.len(),
        Wide::F64(values) => values.len(),
        Wide::Signed(values) => values.len(),
        Wide::Unsigned(values) => values.len(),
    };
    if count != expected {
        return Err(count_error(input, count, "values", expected));
    }
    Ok(wide)
}

/// Converts every value with `exact` (`None`: the value has no exact form in `target`),
/// naming the first one that does not convert.
fn convert<V: Copy + std::fmt::Display, T>(
    input: &InferInputTensor,
    target: &str,
    values: Vec<V>,
    exact: impl Fn(V) -> Option<T>,
) -> Result<Vec<T>, Error> {
    values.into_iter().enumerate().map(|(i, v)| exact(v).ok_or_else(|| inexact(input, i, v, target))).collect()
}

/// Reads an input's `expected` values as FP32 from typed contents or its raw bytes.
/// Every numeric V2 datatype is accepted when each value converts to FP32 exactly
/// (integers up to 2^24 in magnitude, FP64 values that are FP32 values); else the answer
/// is INVALID_ARGUMENT naming the first value that does not.
fn to_fp32(input: &InferInputTensor, raw: Option<&[u8]>, expected: usize) -> Result<Vec<f32>, Error> {
    let target = "FP32";
    match read_values(input, raw, expected, target)? {
        Wide::F32(values) => Ok(values),
        Wide::F64(values) => convert(input, target, values, |v| {
            let narrow = v as f32;
            (f64::from(narrow) == v || v.is_nan()).then_some(narrow)
        }),
        Wide::Signed(values) => {
            convert(input, target, values, |v| (v.unsigned_abs() <= FP32_EXACT_INT as u64).then_some(v as f32))
        }
        Wide::Unsigned(values) => convert(input, target, values, |v| (v <= FP32_EXACT_INT as u64).then_some(v as f32)),
    }
}

/// Largest integer every value up to which FP64 holds exactly (2^53).
const FP64_EXACT_INT: i64 = 1 << 53;

/// An integral float as an integer, when it is one.
fn integral(value: f64) -> Option<i128> {
    // Every finite integral f64 below 2^127 in magnitude converts exactly; larger ones fit
    // no V2 integer type anyway.
    (value.fract() == 0.0 && value.abs() < 1.7e38).then_some(value as i128)
}

/// Every value as an integer narrowed by `narrow` (`None`: out of the target's range),
/// from floats only when integral, naming the first value that does not convert.
fn integers<T>(
    input: &InferInputTensor,
    target: &str,
    wide: Wide,
    narrow: impl Fn(i128) -> Option<T>,
) -> Result<Vec<T>, Error> {
    match wide {
        Wide::F32(values) => convert(input, target, values, |v| integral(f64::from(v)).and_then(&narrow)),
        Wide::F64(values) => convert(input, target, values, |v| integral(v).and_then(&narrow)),
        Wide::Signed(values) => convert(input, target, values, |v| narrow(i128::from(v))),
        Wide::Unsigned(values) => convert(input, target, values, |v| narrow(i128::from(v))),
    }
}

/// Every value as FP16 when FP16 holds it exactly (integers up to 2048 in magnitude,
/// floats with at most 11 significant bits in FP16's range).
fn to_fp16(input: &InferInputTensor, target: &str, wide: Wide) -> Result<Vec<half::f16>, Error> {
    fn exact(value: f64) -> Option<half::f16> {
        let narrow = half::f16::from_f64(value);
        (narrow.to_f64() == value || value.is_nan()).then_some(narrow)
    }
    match wide {
        Wide::F32(values) => convert(input, target, values, |v| exact(f64::from(v))),
        Wide::F64(values) => convert(input, target, values, exact),
        Wide::Signed(values) => convert(input, target, values, |v| i32::try_from(v).ok().and_then(|v| exact(v.into()))),
        Wide::Unsigned(values) => {
            convert(input, target, values, |v| u32::try_from(v).ok().and_then(|v| exact(v.into())))
        }
    }
}

/// Reads an input as the datatype an ONNX graph takes (any numeric V2 type or BOOL),
/// converting what the client sent when every value converts exactly (an INT32 id to
/// INT64, 3.0 to 3, 1 to true, a UINT8 pixel to FP16), else INVALID_ARGUMENT naming the
/// first value that does not.
fn to_datatype(
    input: &InferInputTensor,
    raw: Option<&[u8]>,
    expected: usize,
    target: &str,
) -> Result<TensorData, Error> {
    if target == "FP32" {
        return to_fp32(input, raw, expected).map(TensorData::F32);
    }
    let wide = read_values(input, raw, expected, target)?;
    fn fits<T: TryFrom<i128>>(value: i128) -> Option<T> {
        T::try_from(value).ok()
    }
    Ok(match target {
        "FP64" => TensorData::F64(match wide {
            Wide::F32(values) => values.into_iter().map(f64::from).collect(),
            Wide::F64(values) => values,
            Wide::Signed(values) => {
                convert(input, target, values, |v| (v.unsigned_abs() <= FP64_EXACT_INT as u64).then_some(v as f64))?
            }
            Wide::Unsigned(values) => {
                convert(input, target, values, |v| (v <= FP64_EXACT_INT as u64).then_some(v as f64))?
            }
        }),
        "FP16" => TensorData::F16(to_fp16(input, target, wide)?),
        "INT8" => TensorData::I8(integers(input, target, wide, fits)?),
        "INT16" => TensorData::I16(integers(input, target, wide, fits)?),
        "INT32" => TensorData::I32(integers(input, target, wide, fits)?),
        "INT64" => TensorData::I64(integers(input, target, wide, fits)?),
        "UINT8" => TensorData::U8(integers(input, target, wide, fits)?),
        "UINT16" => TensorData::U16(integers(input, target, wide, fits)?),
        "UINT32" => TensorData::U32(integers(input, target, wide, fits)?),
        "UINT64" => TensorData::U64(integers(input, target, wide, fits)?),
        "BOOL" => TensorData::Bool(integers(input, target, wide, |v| match v {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        })?),
        other => return Err(Error::Internal(format!("the model takes {other}, which no input converts to"))),
    })
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
    let wanted = |name: &str| request.outputs.is_empty() || request.outputs.iter().any(|o| o.name == name);
    // Raw when the request came raw, as Triton does, and whenever an answered output has
    // no typed field (FP16): raw contents come for every output or for none.
    let raw = !request.raw_input_contents.is_empty()
        || outputs.iter().any(|o| wanted(&o.name) && matches!(o.data, TensorData::F16(_)));
    let mut response = ModelInferResponse {
        model_name: model.to_owned(),
        model_version: version.to_string(),
        id: request.id.clone(),
        ..Default::default()
    };
    for output in outputs.into_iter().filter(|o| wanted(&o.name)) {
        let mut tensor = InferOutputTensor {
            name: output.name,
            datatype: output.data.datatype().into(),
            shape: output.shape.iter().map(|d| *d as i64).collect(),
            ..Default::default()
        };
        if raw {
            response.raw_output_contents.push(Bytes::from(raw_bytes(output.data)));
        } else {
            tensor.contents = Some(typed_contents(output.data));
        }
        response.outputs.push(tensor);
    }
    response
}

/// Output values as raw contents: little-endian, BOOL one byte each, BYTES elements each
/// after a 4-byte little-endian length.
fn raw_bytes(data: TensorData) -> Vec<u8> {
    fn le<T, const N: usize>(values: Vec<T>, bytes: fn(T) -> [u8; N]) -> Vec<u8> {
        values.into_iter().flat_map(bytes).collect()
    }
    match data {
        TensorData::F32(values) => le(values, f32::to_le_bytes),
        TensorData::F64(values) => le(values, f64::to_le_bytes),
        TensorData::F16(values) => le(values, half::f16::to_le_bytes),
        TensorData::I8(values) => le(values, i8::to_le_bytes),
        TensorData::I16(values) => le(values, i16::to_le_bytes),
        TensorData::I32(values) => le(values, i32::to_le_bytes),
        TensorData::I64(values) => le(values, i64::to_le_bytes),
        TensorData::U8(values) => values,
        TensorData::U16(values) => le(values, u16::to_le_bytes),
        TensorData::U32(values) => le(values, u32::to_le_bytes),
        TensorData::U64(values) => le(values, u64::to_le_bytes),
        TensorData::Bool(values) => values.into_iter().map(u8::from).collect(),
        TensorData::Bytes(elements) => {
            let mut bytes = Vec::with_capacity(elements.iter().map(|e| e.len() + 4).sum());
            for element in &elements {
                bytes.extend_from_slice(&(element.len() as u32).to_le_bytes());
                bytes.extend_from_slice(element);
            }
            bytes
        }
    }
}

/// Output values in the typed contents field the protocol gives their datatype (INT8 and
/// INT16 widened into `int_contents`, UINT8–UINT16 into `uint_contents`). FP16 has no
/// field of its own: [`encode_response`] sends it raw.
fn typed_contents(data: TensorData) -> InferTensorContents {
    fn widen<T, W: From<T>>(values: Vec<T>) -> Vec<W> {
        values.into_iter().map(W::from).collect()
    }
    let contents = InferTensorContents::default();
    match data {
        TensorData::F32(fp32_contents) => InferTensorContents { fp32_contents, ..contents },
        TensorData::F64(fp64_contents) => InferTensorContents { fp64_contents, ..contents },
        // Not reached from encode_response, which sends FP16 raw; FP32 is the exact widening.
        TensorData::F16(values) => InferTensorContents { fp32_contents: widen(values), ..contents },
        TensorData::I8(values) => InferTensorContents { int_contents: widen(values), ..contents },
        TensorData::I16(values) => InferTensorContents { int_contents: widen(values), ..contents },
        TensorData::I32(int_contents) => InferTensorContents { int_contents, ..contents },
        TensorData::I64(int64_contents) => InferTensorContents { int64_contents, ..contents },
        TensorData::U8(values) => InferTensorContents { uint_contents: widen(values), ..contents },
        TensorData::U16(values) => InferTensorContents { uint_contents: widen(values), ..contents },
        TensorData::U32(uint_contents) => InferTensorContents { uint_contents, ..contents },
        TensorData::U64(uint64_contents) => InferTensorContents { uint64_contents, ..contents },
        TensorData::Bool(bool_contents) => InferTensorContents { bool_contents, ..contents },
        TensorData::Bytes(bytes_contents) => InferTensorContents { bytes_contents, ..contents },
    }
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
            "input \"input\" has datatype BYTES; expected FP32 (any of BOOL, INT8-INT64, UINT8-UINT64, FP16, BF16, \
             FP32, FP64 is converted when exact)"
        );
        let err =
            decode_input(&request("FP32", vec![1, 3], vec![1.0, 2.0, 3.0], false), &signature).expect_err("shape");
        assert_eq!(
            err.to_string(),
            "input \"input\" has shape [1, 3]; expected [rows, 2] with rows 0 or more \
             (the model's metadata writes it [-1, 2])"
        );
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
        let want = vec![(vec![2, 1], TensorData::F32(vec![3.0, 4.0])), (vec![1, 2], TensorData::F32(vec![1.0, 2.0]))];
        assert_eq!(tensors, want);
    }

    #[test]
    fn raw_contents_come_one_per_input_or_not_at_all() {
        let mut two_raw = request("FP32", vec![1, 2], vec![1.0, 2.0], true);
        two_raw.raw_input_contents.push(Bytes::from_static(&[0; 8]));
        let signature = Model::signature_for(Head::Identity, InputKind::Features(2), 0);
        let err = decode_input(&two_raw, &signature).expect_err("two raw for one input");
        assert_eq!(err.to_string(), "2 raw_input_contents for 1 inputs; send one per input or none");
        let spec = modelplane_model::TensorSpec { name: "input".into(), datatype: "FP32".into(), shape: vec![-1, 2] };
        let onnx = modelplane_model::Signature { inputs: vec![spec], outputs: Vec::new() };
        let err = decode_tensors(&two_raw, &onnx).expect_err("two raw for one input");
        assert!(err.to_string().contains("send one per input or none"), "{err}");
    }

    /// Decodes one ONNX input `x` sent as `datatype` with `contents` for a graph taking `target`.
    fn onnx_input(datatype: &str, contents: InferTensorContents, target: &str) -> Result<TensorData, Error> {
        let spec = modelplane_model::TensorSpec { name: "x".into(), datatype: target.into(), shape: vec![-1] };
        let signature = modelplane_model::Signature { inputs: vec![spec], outputs: Vec::new() };
        let mut request = request(datatype, vec![2], vec![], false);
        request.inputs[0].name = "x".into();
        request.inputs[0].contents = Some(contents);
        let mut tensors = decode_tensors(&request, &signature)?;
        Ok(tensors.remove(0).1)
    }

    #[test]
    fn onnx_inputs_convert_to_the_graphs_datatype_only_when_exact() {
        let ints = |values: Vec<i32>| InferTensorContents { int_contents: values, ..Default::default() };
        let int64s = |values: Vec<i64>| InferTensorContents { int64_contents: values, ..Default::default() };
        let floats = |values: Vec<f32>| InferTensorContents { fp32_contents: values, ..Default::default() };
        let ok = |result: Result<TensorData, Error>| result.expect("converts");
        let refused = |result: Result<TensorData, Error>| result.expect_err("refused").to_string();

        assert_eq!(ok(onnx_input("INT32", ints(vec![7, -1]), "INT64")), TensorData::I64(vec![7, -1]));
        assert_eq!(ok(onnx_input("INT64", int64s(vec![1 << 40, 0]), "INT64")), TensorData::I64(vec![1 << 40, 0]));
        assert_eq!(ok(onnx_input("FP32", floats(vec![3.0, -2.0]), "INT64")), TensorData::I64(vec![3, -2]));
        let message = refused(onnx_input("FP32", floats(vec![3.0, 2.5]), "INT64"));
        assert!(
            message.contains("value 2.5 at index 1 cannot be represented exactly in INT64; send INT64"),
            "{message}"
        );
        let message = refused(onnx_input("INT64", int64s(vec![1 << 40, 0]), "INT32"));
        assert!(message.contains("value 1099511627776 at index 0") && message.contains("INT32"), "{message}");
        assert_eq!(ok(onnx_input("INT64", int64s(vec![5, -5]), "INT32")), TensorData::I32(vec![5, -5]));
        assert_eq!(ok(onnx_input("INT32", ints(vec![1, 0]), "BOOL")), TensorData::Bool(vec![true, false]));
        assert!(refused(onnx_input("INT32", ints(vec![1, 2]), "BOOL")).contains("value 2 at index 1"));
        assert_eq!(ok(onnx_input("FP32", floats(vec![0.5, 2.0]), "FP64")), TensorData::F64(vec![0.5, 2.0]));
        let message = refused(onnx_input("INT64", int64s(vec![i64::MIN, 0]), "FP64"));
        assert!(message.contains("cannot be represented exactly in FP64"), "{message}");
        let message = refused(onnx_input("INT64", int64s(vec![i64::MIN, 0]), "FP32"));
        assert!(message.contains("cannot be represented exactly in FP32"), "{message}");
        let message = refused(onnx_input("STRING", InferTensorContents::default(), "INT64"));
        assert!(message.contains("has datatype STRING; expected INT64"), "{message}");
        let message = refused(onnx_input("INT64", int64s(vec![1]), "INT64"));
        assert!(message.contains("has 1 values") && message.contains("needs 2"), "{message}");
    }

    #[test]
    fn onnx_inputs_convert_to_narrow_integer_and_half_precision_types() {
        let ints = |values: Vec<i32>| InferTensorContents { int_contents: values, ..Default::default() };
        let uint64s = |values: Vec<u64>| InferTensorContents { uint64_contents: values, ..Default::default() };
        let floats = |values: Vec<f32>| InferTensorContents { fp32_contents: values, ..Default::default() };
        let ok = |result: Result<TensorData, Error>| result.expect("converts");
        let refused = |result: Result<TensorData, Error>| result.expect_err("refused").to_string();

        // Pixels sent as INT32 or FP32 (numpy's defaults) reach a UINT8 graph.
        assert_eq!(ok(onnx_input("INT32", ints(vec![0, 255]), "UINT8")), TensorData::U8(vec![0, 255]));
        assert_eq!(ok(onnx_input("FP32", floats(vec![17.0, 0.0]), "UINT8")), TensorData::U8(vec![17, 0]));
        assert!(refused(onnx_input("INT32", ints(vec![0, 256]), "UINT8")).contains("value 256 at index 1"));
        assert!(refused(onnx_input("INT32", ints(vec![-1, 0]), "UINT8")).contains("value -1 at index 0"));
        assert!(refused(onnx_input("FP32", floats(vec![1.0, 0.5]), "UINT8")).contains("value 0.5 at index 1"));
        assert_eq!(ok(onnx_input("INT32", ints(vec![-128, 127]), "INT8")), TensorData::I8(vec![-128, 127]));
        assert!(refused(onnx_input("INT32", ints(vec![-129, 0]), "INT8")).contains("value -129"));
        assert_eq!(ok(onnx_input("INT32", ints(vec![-1, 40_000]), "INT32")), TensorData::I32(vec![-1, 40_000]));
        assert!(refused(onnx_input("INT32", ints(vec![40_000, 0]), "INT16")).contains("value 40000"));
        assert_eq!(ok(onnx_input("INT32", ints(vec![65_535, 0]), "UINT16")), TensorData::U16(vec![65_535, 0]));
        assert_eq!(ok(onnx_input("INT32", ints(vec![7, 0]), "UINT32")), TensorData::U32(vec![7, 0]));
        // UINT64 keeps values above INT64's range; INT64 refuses them.
        assert_eq!(ok(onnx_input("UINT64", uint64s(vec![u64::MAX, 1]), "UINT64")), TensorData::U64(vec![u64::MAX, 1]));
        assert!(refused(onnx_input("UINT64", uint64s(vec![u64::MAX, 1]), "INT64")).contains("18446744073709551615"));

        let half = |values: &[f32]| TensorData::F16(values.iter().map(|v| half::f16::from_f32(*v)).collect());
        assert_eq!(ok(onnx_input("FP32", floats(vec![0.5, -1024.0]), "FP16")), half(&[0.5, -1024.0]));
        assert_eq!(ok(onnx_input("INT32", ints(vec![2048, -3]), "FP16")), half(&[2048.0, -3.0]));
        let message = refused(onnx_input("FP32", floats(vec![1.0, 0.1]), "FP16"));
        assert!(message.contains("value 0.1 at index 1 cannot be represented exactly in FP16"), "{message}");
        assert!(refused(onnx_input("INT32", ints(vec![2049, 0]), "FP16")).contains("value 2049"));
        assert!(refused(onnx_input("FP32", floats(vec![1e6, 0.0]), "FP16")).contains("value 1000000"));

        // FP16 sent raw reaches an FP16 graph unchanged.
        let spec = modelplane_model::TensorSpec { name: "input".into(), datatype: "FP16".into(), shape: vec![-1] };
        let signature = modelplane_model::Signature { inputs: vec![spec], outputs: Vec::new() };
        let bits = [half::f16::from_f32(0.1), half::f16::NEG_INFINITY];
        let raw = raw_request("FP16", bits.iter().flat_map(|v| v.to_le_bytes()).collect());
        let tensors = decode_tensors(&raw, &signature).expect("raw FP16");
        assert_eq!(tensors[0].1, TensorData::F16(bits.to_vec()));
    }

    #[test]
    fn narrow_outputs_encode_in_their_protocol_fields_and_half_precision_goes_raw() {
        let outputs = vec![
            Output { name: "u8".into(), shape: vec![2], data: TensorData::U8(vec![0, 255]) },
            Output { name: "i8".into(), shape: vec![1], data: TensorData::I8(vec![-128]) },
            Output { name: "u64".into(), shape: vec![1], data: TensorData::U64(vec![u64::MAX]) },
        ];
        let typed = encode_response(&request("FP32", vec![1, 1], vec![1.0], false), "m", 1, outputs.clone());
        assert!(typed.raw_output_contents.is_empty());
        let datatypes: Vec<&str> = typed.outputs.iter().map(|o| o.datatype.as_str()).collect();
        assert_eq!(datatypes, ["UINT8", "INT8", "UINT64"]);
        let contents: Vec<InferTensorContents> =
            typed.outputs.iter().map(|o| o.contents.clone().unwrap_or_default()).collect();
        assert_eq!(contents[0].uint_contents, [0, 255]);
        assert_eq!(contents[1].int_contents, [-128]);
        assert_eq!(contents[2].uint64_contents, [u64::MAX]);

        // FP16 has no typed field, so a typed request gets every output raw, unless the
        // FP16 output is not among those it asked for.
        let mut with_half = outputs;
        with_half.push(Output {
            name: "f16".into(),
            shape: vec![2],
            data: TensorData::F16(vec![half::f16::from_f32(0.5), half::f16::from_f32(-2.0)]),
        });
        let mut only_u8 = request("FP32", vec![1, 1], vec![1.0], false);
        only_u8.outputs.push(Default::default());
        only_u8.outputs[0].name = "u8".into();
        let answer = encode_response(&only_u8, "m", 1, with_half.clone());
        assert!(answer.raw_output_contents.is_empty());
        assert_eq!(answer.outputs.len(), 1);
        assert_eq!(answer.outputs[0].contents.clone().unwrap_or_default().uint_contents, [0, 255]);
        let answer = encode_response(&request("FP32", vec![1, 1], vec![1.0], false), "m", 1, with_half);
        assert!(answer.outputs.iter().all(|o| o.contents.is_none()));
        assert_eq!(answer.raw_output_contents.len(), 4);
        assert_eq!(answer.raw_output_contents[0].as_ref(), [0, 255]);
        assert_eq!(answer.raw_output_contents[1].as_ref(), (-128i8).to_le_bytes());
        assert_eq!(answer.raw_output_contents[2].as_ref(), u64::MAX.to_le_bytes());
        assert_eq!(answer.raw_output_contents[3].as_ref(), [0x00, 0x38, 0x00, 0xc0]);
    }

    #[test]
    fn every_output_type_encodes_typed_and_raw() {
        let outputs = vec![
            Output { name: "i64".into(), shape: vec![2], data: TensorData::I64(vec![-1, 1 << 40]) },
            Output { name: "i32".into(), shape: vec![1], data: TensorData::I32(vec![-7]) },
            Output { name: "f64".into(), shape: vec![1], data: TensorData::F64(vec![0.1]) },
            Output { name: "bool".into(), shape: vec![2], data: TensorData::Bool(vec![true, false]) },
        ];
        let typed = encode_response(&request("FP32", vec![1, 1], vec![1.0], false), "m", 1, outputs.clone());
        let datatypes: Vec<&str> = typed.outputs.iter().map(|o| o.datatype.as_str()).collect();
        assert_eq!(datatypes, ["INT64", "INT32", "FP64", "BOOL"]);
        let contents: Vec<InferTensorContents> =
            typed.outputs.iter().map(|o| o.contents.clone().unwrap_or_default()).collect();
        assert_eq!(contents[0].int64_contents, [-1, 1 << 40]);
        assert_eq!(contents[1].int_contents, [-7]);
        assert_eq!(contents[2].fp64_contents, [0.1]);
        assert_eq!(contents[3].bool_contents, [true, false]);
        let raw = encode_response(&request("FP32", vec![1, 1], vec![1.0], true), "m", 1, outputs);
        assert_eq!(raw.raw_output_contents[0].as_ref(), [(-1i64).to_le_bytes(), (1i64 << 40).to_le_bytes()].concat());
        assert_eq!(raw.raw_output_contents[1].as_ref(), (-7i32).to_le_bytes());
        assert_eq!(raw.raw_output_contents[2].as_ref(), 0.1f64.to_le_bytes());
        assert_eq!(raw.raw_output_contents[3].as_ref(), [1, 0]);
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
