//! Tensors on the gRPC wire ⇄ values: reads a request's inputs from typed contents or
//! raw little-endian bytes (BYTES elements each after a 4-byte length), converting any
//! numeric datatype to the one a model takes when every value converts exactly, and
//! writes a model's outputs back, typed or raw (raw when the request came raw, as Triton
//! does).

use bytes::Bytes;
use modelplane_proto::inference::model_infer_request::InferInputTensor;
use modelplane_proto::inference::{
    InferTensorContents, ModelInferRequest, ModelInferResponse, model_infer_response::InferOutputTensor,
};

use crate::{Datatype, Error, Output, ShapedTensor, Signature, TensorData};

/// Raw contents come one per input, or not at all.
pub fn check_raw_count(request: &ModelInferRequest) -> Result<(), Error> {
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
            Ok((shape, to_datatype(input, raw, count, spec.datatype)?))
        })
        .collect()
}

/// BYTES elements of a text input: typed `bytes_contents`, or raw elements each
/// prefixed by a 4-byte little-endian length.
pub fn decode_texts(input: &InferInputTensor, raw: Option<&[u8]>) -> Result<Vec<Vec<u8>>, Error> {
    if input.datatype != Datatype::Bytes.name() {
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
    let texts = bytes_elements(input, raw)?;
    if texts.len() != rows {
        return Err(count_error(input, texts.len(), "texts", rows));
    }
    Ok(texts)
}

/// A BYTES input of shape `[rows, columns]` (or `[rows]` when `columns` is 1): its rows
/// and its elements, row-major.
pub fn decode_bytes_rows(
    input: &InferInputTensor,
    raw: Option<&[u8]>,
    columns: usize,
) -> Result<(usize, Vec<Vec<u8>>), Error> {
    if input.datatype != Datatype::Bytes.name() {
        return Err(Error::InvalidArgument(format!(
            "input {:?} has datatype {}; expected BYTES",
            input.name, input.datatype
        )));
    }
    let rows = match input.shape.as_slice() {
        [rows, width] if *rows >= 0 && *width == columns as i64 => *rows as usize,
        [rows] if *rows >= 0 && columns == 1 => *rows as usize,
        _ => {
            return Err(Error::InvalidArgument(format!(
                "input {:?} has shape {:?}; expected [rows, {columns}] (one element per column)",
                input.name, input.shape
            )));
        }
    };
    let elements = bytes_elements(input, raw)?;
    let expected = rows.saturating_mul(columns);
    if elements.len() != expected {
        return Err(count_error(input, elements.len(), "elements", expected));
    }
    Ok((rows, elements))
}

/// The BYTES elements an input carries: typed `bytes_contents`, or raw elements each
/// prefixed by a 4-byte little-endian length.
fn bytes_elements(input: &InferInputTensor, raw: Option<&[u8]>) -> Result<Vec<Vec<u8>>, Error> {
    Ok(match raw {
        Some(mut raw) => {
            let mut texts = Vec::new();
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
    })
}

/// Largest integer every value up to which FP32 holds exactly (2^24).
const FP32_EXACT_INT: i64 = 1 << 24;

fn count_error(input: &InferInputTensor, found: usize, unit: &str, expected: usize) -> Error {
    Error::InvalidArgument(format!(
        "input {:?} has {found} {unit}; shape {:?} of {} needs {expected}",
        input.name, input.shape, input.datatype
    ))
}

fn inexact(input: &InferInputTensor, index: usize, value: impl std::fmt::Display, target: Datatype) -> Error {
    Error::InvalidArgument(format!(
        "input {:?} ({}) value {value} at index {index} cannot be represented exactly in {target}; send {target}",
        input.name, input.datatype
    ))
}

/// Values as read from the wire, before the conversion to the model's datatype.
enum Wide {
    F32(Vec<f32>),
    F64(Vec<f64>),
    Signed(Vec<i64>),
    Unsigned(Vec<u64>),
}

fn read_raw(datatype: Datatype, raw: &[u8]) -> Wide {
    fn words<const N: usize>(raw: &[u8]) -> impl Iterator<Item = [u8; N]> + '_ {
        raw.chunks_exact(N).map(|chunk| {
            let mut word = [0u8; N];
            word.copy_from_slice(chunk);
            word
        })
    }
    match datatype {
        Datatype::Bool | Datatype::Uint8 => Wide::Unsigned(raw.iter().map(|b| u64::from(*b)).collect()),
        Datatype::Int8 => Wide::Signed(raw.iter().map(|b| i64::from(*b as i8)).collect()),
        Datatype::Int16 => Wide::Signed(words::<2>(raw).map(|w| i64::from(i16::from_le_bytes(w))).collect()),
        Datatype::Uint16 => Wide::Unsigned(words::<2>(raw).map(|w| u64::from(u16::from_le_bytes(w))).collect()),
        Datatype::Int32 => Wide::Signed(words::<4>(raw).map(|w| i64::from(i32::from_le_bytes(w))).collect()),
        Datatype::Uint32 => Wide::Unsigned(words::<4>(raw).map(|w| u64::from(u32::from_le_bytes(w))).collect()),
        Datatype::Int64 => Wide::Signed(words::<8>(raw).map(i64::from_le_bytes).collect()),
        Datatype::Uint64 => Wide::Unsigned(words::<8>(raw).map(u64::from_le_bytes).collect()),
        Datatype::Fp16 => Wide::F32(words::<2>(raw).map(|w| half::f16::from_le_bytes(w).to_f32()).collect()),
        Datatype::Bf16 => Wide::F32(words::<2>(raw).map(|w| half::bf16::from_le_bytes(w).to_f32()).collect()),
        Datatype::Fp64 => Wide::F64(words::<8>(raw).map(f64::from_le_bytes).collect()),
        // BYTES has no element size and never reaches here (read_values).
        Datatype::Fp32 | Datatype::Bytes => Wide::F32(words::<4>(raw).map(f32::from_le_bytes).collect()),
    }
}

/// Typed contents of `input`, checked against the range of its declared datatype (the
/// protocol carries INT8/INT16 in `int_contents` and UINT8/UINT16 in `uint_contents`).
fn read_typed(input: &InferInputTensor, datatype: Datatype, contents: InferTensorContents) -> Result<Wide, Error> {
    let out_of_range = |value: i128| {
        Error::InvalidArgument(format!("input {:?} value {value} does not fit {}", input.name, input.datatype))
    };
    let check = |value: i128, low: i128, high: i128| {
        if (low..=high).contains(&value) { Ok(()) } else { Err(out_of_range(value)) }
    };
    Ok(match datatype {
        Datatype::Bool => Wide::Unsigned(contents.bool_contents.into_iter().map(u64::from).collect()),
        Datatype::Int8 | Datatype::Int16 => {
            let (low, high) = if datatype == Datatype::Int8 {
                (i8::MIN.into(), i8::MAX.into())
            } else {
                (i16::MIN.into(), i16::MAX.into())
            };
            for value in &contents.int_contents {
                check(i128::from(*value), low, high)?;
            }
            Wide::Signed(contents.int_contents.into_iter().map(i64::from).collect())
        }
        Datatype::Int32 => Wide::Signed(contents.int_contents.into_iter().map(i64::from).collect()),
        Datatype::Int64 => Wide::Signed(contents.int64_contents),
        Datatype::Uint8 | Datatype::Uint16 => {
            let high = if datatype == Datatype::Uint8 { u8::MAX.into() } else { u16::MAX.into() };
            for value in &contents.uint_contents {
                check(i128::from(*value), 0, high)?;
            }
            Wide::Unsigned(contents.uint_contents.into_iter().map(u64::from).collect())
        }
        Datatype::Uint32 => Wide::Unsigned(contents.uint_contents.into_iter().map(u64::from).collect()),
        Datatype::Uint64 => Wide::Unsigned(contents.uint64_contents),
        Datatype::Fp16 | Datatype::Bf16 => {
            return Err(Error::InvalidArgument(format!(
                "input {:?} is {}, which the protocol carries only in raw_input_contents (2 bytes per value)",
                input.name, input.datatype
            )));
        }
        Datatype::Fp64 => Wide::F64(contents.fp64_contents),
        Datatype::Fp32 | Datatype::Bytes => Wide::F32(contents.fp32_contents),
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
fn read_values(input: &InferInputTensor, raw: Option<&[u8]>, expected: usize, target: Datatype) -> Result<Wide, Error> {
    let numeric = Datatype::parse(&input.datatype).and_then(|datatype| Some((datatype, datatype.element_size()?)));
    let Some((datatype, width)) = numeric else {
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
            read_raw(datatype, raw)
        }
        None => read_typed(input, datatype, contents)?,
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
    target: Datatype,
    values: Vec<V>,
    exact: impl Fn(V) -> Option<T>,
) -> Result<Vec<T>, Error> {
    values.into_iter().enumerate().map(|(i, v)| exact(v).ok_or_else(|| inexact(input, i, v, target))).collect()
}

/// Reads an input's `expected` values as FP32 from typed contents or its raw bytes.
/// Every numeric V2 datatype is accepted when each value converts to FP32 exactly
/// (integers up to 2^24 in magnitude, FP64 values that are FP32 values); else the answer
/// is INVALID_ARGUMENT naming the first value that does not.
pub fn to_fp32(input: &InferInputTensor, raw: Option<&[u8]>, expected: usize) -> Result<Vec<f32>, Error> {
    let target = Datatype::Fp32;
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
    target: Datatype,
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
fn to_fp16(input: &InferInputTensor, target: Datatype, wide: Wide) -> Result<Vec<half::f16>, Error> {
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
    target: Datatype,
) -> Result<TensorData, Error> {
    if target == Datatype::Fp32 {
        return to_fp32(input, raw, expected).map(TensorData::F32);
    }
    if target == Datatype::Bytes {
        if input.datatype != Datatype::Bytes.name() {
            return Err(Error::InvalidArgument(format!(
                "input {:?} has datatype {}; expected BYTES (text, one element per value)",
                input.name, input.datatype
            )));
        }
        let elements = bytes_elements(input, raw)?;
        if elements.len() != expected {
            return Err(count_error(input, elements.len(), "elements", expected));
        }
        return Ok(TensorData::Bytes(elements));
    }
    let wide = read_values(input, raw, expected, target)?;
    fn fits<T: TryFrom<i128>>(value: i128) -> Option<T> {
        T::try_from(value).ok()
    }
    Ok(match target {
        Datatype::Fp64 => TensorData::F64(match wide {
            Wide::F32(values) => values.into_iter().map(f64::from).collect(),
            Wide::F64(values) => values,
            Wide::Signed(values) => {
                convert(input, target, values, |v| (v.unsigned_abs() <= FP64_EXACT_INT as u64).then_some(v as f64))?
            }
            Wide::Unsigned(values) => {
                convert(input, target, values, |v| (v <= FP64_EXACT_INT as u64).then_some(v as f64))?
            }
        }),
        Datatype::Fp16 => TensorData::F16(to_fp16(input, target, wide)?),
        Datatype::Int8 => TensorData::I8(integers(input, target, wide, fits)?),
        Datatype::Int16 => TensorData::I16(integers(input, target, wide, fits)?),
        Datatype::Int32 => TensorData::I32(integers(input, target, wide, fits)?),
        Datatype::Int64 => TensorData::I64(integers(input, target, wide, fits)?),
        Datatype::Uint8 => TensorData::U8(integers(input, target, wide, fits)?),
        Datatype::Uint16 => TensorData::U16(integers(input, target, wide, fits)?),
        Datatype::Uint32 => TensorData::U32(integers(input, target, wide, fits)?),
        Datatype::Uint64 => TensorData::U64(integers(input, target, wide, fits)?),
        Datatype::Bool => TensorData::Bool(integers(input, target, wide, |v| match v {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        })?),
        other @ (Datatype::Fp32 | Datatype::Bf16 | Datatype::Bytes) => {
            return Err(Error::Internal(format!("the model takes {other}, which no input converts to")));
        }
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
            datatype: output.data.datatype().name().into(),
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
