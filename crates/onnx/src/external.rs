//! Which files an ONNX graph keeps its tensors in (ONNX external data), read by walking
//! the protobuf wire format as a stream: the graph is never decoded whole, so this costs
//! the same for a 2 GB graph as for a small one.
//!
//! ModelProto.graph (7) → GraphProto.initializer (5) → TensorProto.external_data (13),
//! entries of StringStringEntryProto { key (1), value (2) } whose key is `location`.

use std::io::Read;

use crate::Error;

const MODEL_GRAPH: u64 = 7;
const GRAPH_INITIALIZER: u64 = 5;
const TENSOR_EXTERNAL_DATA: u64 = 13;
const ENTRY_KEY: u64 = 1;
const ENTRY_VALUE: u64 = 2;
/// An external-data entry (a key and a path) is tiny; anything larger is not one.
const MAX_ENTRY_BYTES: u64 = 64 << 10;

/// The distinct files (relative to the graph's folder, in first-use order) that the
/// graph's initializers keep their data in; empty for a self-contained graph. A location
/// that is absolute or climbs out of the folder is refused: such a graph cannot be moved
/// with its data.
pub fn external_data_locations(graph: impl Read) -> Result<Vec<String>, Error> {
    let mut wire = Wire { reader: std::io::BufReader::with_capacity(1 << 16, graph), read: 0 };
    let mut locations: Vec<String> = Vec::new();
    while let Some((field, kind)) = wire.key()? {
        match (field, kind) {
            (MODEL_GRAPH, WireKind::Delimited) => {
                let end = wire.length()? + wire.read;
                while wire.read < end {
                    let Some((field, kind)) = wire.key()? else { break };
                    match (field, kind) {
                        (GRAPH_INITIALIZER, WireKind::Delimited) => {
                            let tensor_end = wire.length()? + wire.read;
                            tensor_locations(&mut wire, tensor_end, &mut locations)?;
                        }
                        (_, kind) => wire.skip(kind)?,
                    }
                }
            }
            (_, kind) => wire.skip(kind)?,
        }
    }
    for location in &locations {
        check_location(location)?;
    }
    Ok(locations)
}

fn tensor_locations<R: Read>(wire: &mut Wire<R>, end: u64, locations: &mut Vec<String>) -> Result<(), Error> {
    while wire.read < end {
        let Some((field, kind)) = wire.key()? else { break };
        match (field, kind) {
            (TENSOR_EXTERNAL_DATA, WireKind::Delimited) => {
                let length = wire.length()?;
                if length > MAX_ENTRY_BYTES {
                    return Err(malformed("an external_data entry is implausibly large"));
                }
                let entry = wire.bytes(length)?;
                if let Some(location) = location_of(&entry)?
                    && !locations.contains(&location)
                {
                    locations.push(location);
                }
            }
            (_, kind) => wire.skip(kind)?,
        }
    }
    Ok(())
}

/// The value of an entry whose key is `location`.
fn location_of(entry: &[u8]) -> Result<Option<String>, Error> {
    let mut wire = Wire { reader: entry, read: 0 };
    let (mut key, mut value) = (None, None);
    while let Some((field, kind)) = wire.key()? {
        match (field, kind) {
            (ENTRY_KEY | ENTRY_VALUE, WireKind::Delimited) => {
                let length = wire.length()?;
                let text = String::from_utf8(wire.bytes(length)?)
                    .map_err(|_| malformed("an external_data entry is not UTF-8"))?;
                if field == ENTRY_KEY { key = Some(text) } else { value = Some(text) }
            }
            (_, kind) => wire.skip(kind)?,
        }
    }
    Ok(if key.as_deref() == Some("location") { value } else { None })
}

fn check_location(location: &str) -> Result<(), Error> {
    let path = std::path::Path::new(location);
    let escapes = path.components().any(|part| !matches!(part, std::path::Component::Normal(_)));
    if location.is_empty() || escapes {
        return Err(Error::Load(format!(
            "external data location {location:?} is not a plain relative path inside the graph's folder"
        )));
    }
    Ok(())
}

fn malformed(what: &str) -> Error {
    Error::Load(format!("not an ONNX model: {what}"))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WireKind {
    Varint,
    Fixed64,
    Delimited,
    Fixed32,
}

struct Wire<R> {
    reader: R,
    read: u64,
}

impl<R: Read> Wire<R> {
    fn byte(&mut self) -> Result<Option<u8>, Error> {
        let mut byte = [0u8; 1];
        match self.reader.read(&mut byte) {
            Ok(0) => Ok(None),
            Ok(_) => {
                self.read += 1;
                Ok(Some(byte[0]))
            }
            Err(err) => Err(Error::Load(format!("reading the graph: {err}"))),
        }
    }

    fn varint(&mut self) -> Result<Option<u64>, Error> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let Some(byte) = self.byte()? else {
                return if shift == 0 { Ok(None) } else { Err(malformed("the file ends inside a number")) };
            };
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(Some(value));
            }
        }
        Err(malformed("a number runs past 64 bits"))
    }

    /// The next field number and wire kind; `None` at the end of the input.
    fn key(&mut self) -> Result<Option<(u64, WireKind)>, Error> {
        let Some(key) = self.varint()? else { return Ok(None) };
        let kind = match key & 7 {
            0 => WireKind::Varint,
            1 => WireKind::Fixed64,
            2 => WireKind::Delimited,
            5 => WireKind::Fixed32,
            other => return Err(malformed(&format!("wire type {other} is not protobuf's"))),
        };
        Ok(Some((key >> 3, kind)))
    }

    fn length(&mut self) -> Result<u64, Error> {
        self.varint()?.ok_or_else(|| malformed("the file ends before a length"))
    }

    fn bytes(&mut self, length: u64) -> Result<Vec<u8>, Error> {
        let mut bytes = Vec::new();
        let got = (&mut self.reader)
            .take(length)
            .read_to_end(&mut bytes)
            .map_err(|err| Error::Load(format!("reading the graph: {err}")))?;
        self.read += got as u64;
        if (got as u64) < length {
            return Err(malformed("the file ends inside a field"));
        }
        Ok(bytes)
    }

    fn skip(&mut self, kind: WireKind) -> Result<(), Error> {
        let length = match kind {
            WireKind::Varint => return self.varint()?.map(drop).ok_or_else(|| malformed("the file ends in a number")),
            WireKind::Fixed64 => 8,
            WireKind::Fixed32 => 4,
            WireKind::Delimited => self.length()?,
        };
        let skipped = std::io::copy(&mut (&mut self.reader).take(length), &mut std::io::sink())
            .map_err(|err| Error::Load(format!("reading the graph: {err}")))?;
        self.read += skipped;
        if skipped < length {
            return Err(malformed("the file ends inside a field"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(mut value: u64, out: &mut Vec<u8>) {
        loop {
            let byte = (value & 0x7f) as u8;
            value >>= 7;
            if value == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }

    fn delimited(field: u64, body: &[u8], out: &mut Vec<u8>) {
        varint(field << 3 | 2, out);
        varint(body.len() as u64, out);
        out.extend_from_slice(body);
    }

    fn tensor(location: Option<&str>) -> Vec<u8> {
        let mut tensor = Vec::new();
        delimited(8, b"weight", &mut tensor); // name
        varint(2 << 3, &mut tensor); // data_type FLOAT, a varint field to skip
        varint(1, &mut tensor);
        if let Some(location) = location {
            for (key, value) in [("location", location), ("offset", "0")] {
                let mut entry = Vec::new();
                delimited(ENTRY_KEY, key.as_bytes(), &mut entry);
                delimited(ENTRY_VALUE, value.as_bytes(), &mut entry);
                delimited(TENSOR_EXTERNAL_DATA, &entry, &mut tensor);
            }
        } else {
            delimited(9, &[0u8; 16], &mut tensor); // raw_data
        }
        tensor
    }

    fn model(tensors: &[Vec<u8>]) -> Vec<u8> {
        let mut graph = Vec::new();
        delimited(2, b"main", &mut graph); // name
        for tensor in tensors {
            delimited(GRAPH_INITIALIZER, tensor, &mut graph);
        }
        let mut model = Vec::new();
        varint(1 << 3, &mut model); // ir_version
        varint(9, &mut model);
        delimited(MODEL_GRAPH, &graph, &mut model);
        model
    }

    #[test]
    fn lists_each_external_file_once_in_order() {
        let bytes = model(&[tensor(Some("b.bin")), tensor(None), tensor(Some("a.bin")), tensor(Some("b.bin"))]);
        assert_eq!(external_data_locations(bytes.as_slice()).expect("parses"), ["b.bin", "a.bin"]);
        assert!(external_data_locations(model(&[tensor(None)]).as_slice()).expect("parses").is_empty());
    }

    #[test]
    fn refuses_locations_outside_the_folder_and_truncated_graphs() {
        for location in ["../secret", "/etc/passwd", "dir/../../x"] {
            let bytes = model(&[tensor(Some(location))]);
            let err = external_data_locations(bytes.as_slice()).expect_err(location);
            assert!(err.to_string().contains("plain relative path"), "{err}");
        }
        let bytes = model(&[tensor(Some("w.bin"))]);
        let cut = &bytes[..bytes.len() - 3];
        assert!(external_data_locations(cut).is_err());
    }
}
