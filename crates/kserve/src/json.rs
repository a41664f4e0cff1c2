//! The V2 JSON view of tensors (REST, and what the CLI prints) ⇄ the raw little-endian
//! bytes the gRPC path carries. Every JSON input becomes raw contents (its `data`, flat
//! or nested, is checked against the datatype's range and packed), so a worker sees one
//! shape of request whatever the client sent.

use bytes::Bytes;
use modelplane_proto::inference::InferTensorContents;
use modelplane_proto::inference::model_infer_request::InferInputTensor;
use serde_json::Value;

use crate::{Datatype, Error};

fn flatten<'a>(value: &'a Value, out: &mut Vec<&'a Value>) {
    match value {
        Value::Array(items) => items.iter().for_each(|item| flatten(item, out)),
        other => out.push(other),
    }
}

/// Packs one JSON element as `datatype`, refusing values the type cannot hold.
fn pack(datatype: Datatype, value: &Value, out: &mut Vec<u8>) -> Result<(), String> {
    let int = || value.as_i64().ok_or_else(|| format!("{value} is not an integer"));
    let uint = || value.as_u64().ok_or_else(|| format!("{value} is not a non-negative integer"));
    let float = || value.as_f64().ok_or_else(|| format!("{value} is not a number"));
    let overflow = |_| format!("{value} does not fit {datatype}");
    let fits = |finite: bool| if finite { Ok(()) } else { Err(format!("{value} does not fit {datatype}")) };
    match datatype {
        Datatype::Bool => out.push(u8::from(value.as_bool().ok_or_else(|| format!("{value} is not true or false"))?)),
        Datatype::Int8 => out.extend(i8::try_from(int()?).map_err(overflow)?.to_le_bytes()),
        Datatype::Int16 => out.extend(i16::try_from(int()?).map_err(overflow)?.to_le_bytes()),
        Datatype::Int32 => out.extend(i32::try_from(int()?).map_err(overflow)?.to_le_bytes()),
        Datatype::Int64 => out.extend(int()?.to_le_bytes()),
        Datatype::Uint8 => out.extend(u8::try_from(uint()?).map_err(overflow)?.to_le_bytes()),
        Datatype::Uint16 => out.extend(u16::try_from(uint()?).map_err(overflow)?.to_le_bytes()),
        Datatype::Uint32 => out.extend(u32::try_from(uint()?).map_err(overflow)?.to_le_bytes()),
        Datatype::Uint64 => out.extend(uint()?.to_le_bytes()),
        // JSON numbers are finite; one that becomes infinite in the narrower type does
        // not fit it (rounding to the nearest value that does is the usual conversion).
        Datatype::Fp16 => {
            let narrowed = half::f16::from_f64(float()?);
            fits(narrowed.is_finite())?;
            out.extend(narrowed.to_le_bytes());
        }
        Datatype::Bf16 => {
            let narrowed = half::bf16::from_f64(float()?);
            fits(narrowed.is_finite())?;
            out.extend(narrowed.to_le_bytes());
        }
        Datatype::Fp32 => {
            let narrowed = float()? as f32;
            fits(narrowed.is_finite())?;
            out.extend(narrowed.to_le_bytes());
        }
        Datatype::Fp64 => out.extend(float()?.to_le_bytes()),
        Datatype::Bytes => {
            let text = value.as_str().ok_or_else(|| format!("{value} is not a string"))?;
            let length = u32::try_from(text.len()).map_err(|_| "a string is longer than 4 GiB".to_owned())?;
            out.extend(length.to_le_bytes());
            out.extend(text.as_bytes());
        }
    }
    Ok(())
}

fn bad_request(message: impl Into<String>) -> Error {
    Error::InvalidArgument(message.into())
}

/// One JSON input as a gRPC tensor and its raw bytes: its `data`, or (binary
/// extension) the next `binary_data_size` bytes of `binary`.
pub fn input_tensor(input: &Value, binary: &mut Bytes) -> Result<(InferInputTensor, Bytes), Error> {
    let name = input.get("name").and_then(Value::as_str).ok_or_else(|| bad_request("an input has no name"))?;
    let datatype = input
        .get("datatype")
        .and_then(Value::as_str)
        .ok_or_else(|| bad_request(format!("input {name:?} has no datatype")))?;
    let datatype: Datatype = datatype.parse().map_err(|err| bad_request(format!("input {name:?}: {err}")))?;
    let shape: Vec<i64> = input
        .get("shape")
        .and_then(Value::as_array)
        .and_then(|dims| dims.iter().map(Value::as_i64).collect())
        .ok_or_else(|| bad_request(format!("input {name:?} needs a shape of integers")))?;
    let binary_size = input.get("parameters").and_then(|p| p.get("binary_data_size")).and_then(Value::as_u64);
    let raw = match (binary_size, input.get("data")) {
        (Some(size), _) => {
            let size = usize::try_from(size).unwrap_or(usize::MAX);
            if size > binary.len() {
                return Err(bad_request(format!(
                    "input {name:?} declares {size} bytes of binary data; only {} follow",
                    binary.len()
                )));
            }
            binary.split_to(size)
        }
        (None, Some(data)) => {
            let mut values = Vec::new();
            flatten(data, &mut values);
            // Said here in the caller's terms (values, not the raw bytes they become).
            let needed = shape.iter().try_fold(1u64, |acc, d| u64::try_from(*d).ok().and_then(|d| acc.checked_mul(d)));
            if let Some(needed) = needed.filter(|needed| *needed != values.len() as u64) {
                return Err(bad_request(format!(
                    "input {name:?} has {} values in \"data\"; shape {shape:?} needs {needed}",
                    values.len()
                )));
            }
            let mut packed = Vec::with_capacity(values.len() * 4);
            for (index, value) in values.iter().enumerate() {
                pack(datatype, value, &mut packed)
                    .map_err(|err| bad_request(format!("input {name:?} element {index}: {err}")))?;
            }
            Bytes::from(packed)
        }
        (None, None) => {
            return Err(bad_request(format!("input {name:?} has neither \"data\" nor parameters.binary_data_size")));
        }
    };
    let tensor =
        InferInputTensor { name: name.to_owned(), datatype: datatype.name().into(), shape, ..Default::default() };
    Ok((tensor, raw))
}

/// Raw output bytes (little-endian, BYTES length-prefixed) as a flat JSON array; the
/// REST answer's `data`, and what `modelplane predict` prints of raw outputs.
pub fn raw_output_json(datatype: &str, raw: &[u8]) -> Result<Value, Error> {
    fn words<const N: usize, T: Into<Value>>(raw: &[u8], read: fn([u8; N]) -> T) -> Vec<Value> {
        raw.chunks_exact(N)
            .map(|chunk| {
                let mut word = [0u8; N];
                word.copy_from_slice(chunk);
                read(word).into()
            })
            .collect()
    }
    let Some(datatype) = Datatype::parse(datatype) else {
        return Err(Error::Internal(format!(
            "output datatype {datatype} has no JSON form here; request it with binary_data"
        )));
    };
    let values: Vec<Value> = match datatype {
        Datatype::Bool => raw.iter().map(|b| Value::from(*b != 0)).collect(),
        Datatype::Int8 => words(raw, i8::from_le_bytes),
        Datatype::Int16 => words(raw, i16::from_le_bytes),
        Datatype::Int32 => words(raw, i32::from_le_bytes),
        Datatype::Int64 => words(raw, i64::from_le_bytes),
        Datatype::Uint8 => words(raw, u8::from_le_bytes),
        Datatype::Uint16 => words(raw, u16::from_le_bytes),
        Datatype::Uint32 => words(raw, u32::from_le_bytes),
        Datatype::Uint64 => words(raw, u64::from_le_bytes),
        Datatype::Fp16 => words(raw, |w| f64::from(half::f16::from_le_bytes(w).to_f32())),
        Datatype::Bf16 => words(raw, |w| f64::from(half::bf16::from_le_bytes(w).to_f32())),
        Datatype::Fp32 => words(raw, |w| f64::from(f32::from_le_bytes(w))),
        Datatype::Fp64 => words(raw, f64::from_le_bytes),
        Datatype::Bytes => {
            let mut values = Vec::new();
            let mut rest = raw;
            while rest.len() >= 4 {
                let length = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
                let text = rest
                    .get(4..4 + length)
                    .ok_or_else(|| Error::Internal("a BYTES output element is cut short".into()))?;
                values.push(Value::from(String::from_utf8_lossy(text).into_owned()));
                rest = &rest[4 + length..];
            }
            values
        }
    };
    Ok(Value::Array(values))
}

/// An output's values as JSON from the typed contents field of its datatype (what
/// `modelplane predict` prints of typed outputs); an unknown datatype reads as FP32.
pub fn typed_output_json(datatype: &str, contents: InferTensorContents) -> Value {
    match Datatype::parse(datatype).unwrap_or(Datatype::Fp32) {
        Datatype::Bytes => Value::from(
            contents.bytes_contents.iter().map(|b| String::from_utf8_lossy(b).into_owned()).collect::<Vec<_>>(),
        ),
        Datatype::Bool => Value::from(contents.bool_contents),
        Datatype::Int8 | Datatype::Int16 | Datatype::Int32 => Value::from(contents.int_contents),
        Datatype::Int64 => Value::from(contents.int64_contents),
        Datatype::Uint8 | Datatype::Uint16 | Datatype::Uint32 => Value::from(contents.uint_contents),
        Datatype::Uint64 => Value::from(contents.uint64_contents),
        Datatype::Fp64 => Value::from(contents.fp64_contents),
        // FP16 and BF16 travel raw only; FP32 is the field left.
        Datatype::Fp16 | Datatype::Bf16 | Datatype::Fp32 => Value::from(contents.fp32_contents),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn nested_json_data_packs_by_datatype_and_ranges_are_checked() {
        let input = json!({ "name": "x", "datatype": "INT16", "shape": [2, 2], "data": [[1, -2], [300, 4]] });
        let (tensor, raw) = input_tensor(&input, &mut Bytes::new()).expect("packs");
        assert_eq!(tensor.shape, [2, 2]);
        assert_eq!(raw.as_ref(), [1, 0, 254, 255, 44, 1, 4, 0]);
        let too_big = json!({ "name": "x", "datatype": "UINT8", "shape": [1], "data": [256] });
        assert!(input_tensor(&too_big, &mut Bytes::new()).is_err());
        for (datatype, largest) in [("FP32", 3.4e38), ("FP16", 65504.0), ("BF16", 3.38e38)] {
            let fits = json!({ "name": "x", "datatype": datatype, "shape": [1], "data": [largest] });
            assert!(input_tensor(&fits, &mut Bytes::new()).is_ok(), "{datatype} holds {largest}");
            let err = pack(Datatype::parse(datatype).expect("a datatype"), &json!(-1e40), &mut Vec::new())
                .expect_err("refused");
            assert_eq!(err, format!("-1e+40 does not fit {datatype}"));
        }
        let text = json!({ "name": "t", "datatype": "BYTES", "shape": [1], "data": ["hé"] });
        let (_, raw) = input_tensor(&text, &mut Bytes::new()).expect("packs");
        assert_eq!(raw.as_ref(), [3, 0, 0, 0, b'h', 0xC3, 0xA9]);
    }

    #[test]
    fn binary_inputs_take_their_declared_bytes_in_order() {
        let mut binary = Bytes::from_static(&[1, 2, 3, 4, 5, 6, 7, 8, 9]);
        let first = json!({ "name": "a", "datatype": "FP32", "shape": [1], "parameters": { "binary_data_size": 4 } });
        let (_, raw) = input_tensor(&first, &mut binary).expect("first");
        assert_eq!(raw.as_ref(), [1, 2, 3, 4]);
        let too_long =
            json!({ "name": "b", "datatype": "FP32", "shape": [2], "parameters": { "binary_data_size": 8 } });
        assert!(input_tensor(&too_long, &mut binary).is_err(), "only 5 bytes are left");
    }

    #[test]
    fn outputs_decode_to_json() {
        let raw: Vec<u8> = [1.5f32, -2.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(raw_output_json("FP32", &raw).expect("fp32"), json!([1.5, -2.0]));
        let texts = [2u32.to_le_bytes().as_slice(), b"ok"].concat();
        assert_eq!(raw_output_json("BYTES", &texts).expect("bytes"), json!(["ok"]));
        let int64s: Vec<u8> = [-1i64, 1 << 40].iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(raw_output_json("INT64", &int64s).expect("int64"), json!([-1, 1_099_511_627_776i64]));
        assert_eq!(raw_output_json("BOOL", &[1, 0]).expect("bool"), json!([true, false]));
        assert_eq!(raw_output_json("FP64", &0.1f64.to_le_bytes()).expect("fp64"), json!([0.1]));
        assert_eq!(raw_output_json("UINT16", &[1, 1]).expect("uint16"), json!([257]));
        assert_eq!(raw_output_json("INT8", &[255]).expect("int8"), json!([-1]));
        assert_eq!(raw_output_json("FP16", &[0x00, 0x38, 0x00, 0xc0]).expect("fp16"), json!([0.5, -2.0]));
        let message = raw_output_json("BYTES", &[9, 0, 0, 0, b'x']).expect_err("cut short");
        assert_eq!(message.to_string(), "a BYTES output element is cut short");
    }
}
