//! A request's input as the worker's models take it: FP32 rows (`Array2`) for a native
//! numeric model, texts for a text model, shaped tensors for an ONNX graph. The protocol
//! itself (datatypes, raw and typed contents, exact conversions, the response) is
//! `modelplane_kserve::codec`'s.

use modelplane_kserve::Datatype;
use modelplane_kserve::codec::{check_raw_count, decode_bytes_rows, decode_texts, to_fp32};
pub use modelplane_kserve::codec::{check_requested_outputs, decode_tensors, encode_response};
use modelplane_kserve::{ShapedTensor, Signature};
use modelplane_model::CATEGORIES_INPUT_NAME;
use modelplane_proto::inference::ModelInferRequest;
use modelplane_proto::inference::model_infer_request::InferInputTensor;
use ndarray::Array2;

use crate::Error;

/// A request's input, decoded for the model.
#[derive(Debug)]
pub enum Decoded {
    /// FP32 rows for a numeric model.
    Features(Array2<f32>),
    /// One text per row for a text model.
    Texts(Vec<Vec<u8>>),
    /// A table for a model with categorical columns: numeric features `[rows,
    /// numeric]` and the categorical elements, row-major.
    Table {
        /// Numeric features (no columns when the model has none).
        numeric: Array2<f32>,
        /// One element per categorical column per row.
        categories: Vec<Vec<u8>>,
    },
    /// One tensor (shape, values) per input, in signature order and of the datatype the
    /// signature declares, for ONNX graphs.
    Tensors(Vec<ShapedTensor>),
}

/// Decodes the input a native model's signature asks for: FP32 `[rows, features]` (or a
/// lossless wider type), BYTES `[rows]` (or `[rows, 1]`) for text models, or both
/// `input` and BYTES `categories` `[rows, columns]` for a model with categorical columns.
pub fn decode_input(request: &ModelInferRequest, signature: &Signature) -> Result<Decoded, Error> {
    if signature.inputs.iter().any(|spec| spec.name == CATEGORIES_INPUT_NAME) {
        return decode_table(request, signature);
    }
    let Some(spec) = signature.inputs.first() else {
        return Err(Error::Internal("model signature has no input".into()));
    };
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
    let raw = request.raw_input_contents.first().map(|raw| raw.as_ref());
    if spec.datatype == Datatype::Bytes {
        return Ok(Decoded::Texts(decode_texts(input, raw)?));
    }
    decode_features(input, raw, spec.shape.get(1).copied().unwrap_or(-1)).map(Decoded::Features)
}

/// FP32 rows `[rows, features]` (`features` -1: any width).
fn decode_features(input: &InferInputTensor, raw: Option<&[u8]>, features: i64) -> Result<Array2<f32>, Error> {
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
    let values = to_fp32(input, raw, expected)?;
    Array2::from_shape_vec((rows, columns), values).map_err(|err| Error::Internal(err.to_string()))
}

/// Every input of a table signature (numeric `input` unless the model has no numeric
/// column, and `categories`), matched by name, with the same number of rows.
fn decode_table(request: &ModelInferRequest, signature: &Signature) -> Result<Decoded, Error> {
    let expected: Vec<&str> = signature.inputs.iter().map(|spec| spec.name.as_str()).collect();
    let given: Vec<&str> = request.inputs.iter().map(|input| input.name.as_str()).collect();
    let mut sorted = (expected.clone(), given.clone());
    sorted.0.sort_unstable();
    sorted.1.sort_unstable();
    if sorted.0 != sorted.1 {
        return Err(Error::InvalidArgument(format!(
            "model expects inputs {expected:?} (numeric features, and one BYTES element per categorical column); \
             got {given:?}"
        )));
    }
    check_raw_count(request)?;
    let (mut numeric, mut categories) = (None, None);
    for (index, input) in request.inputs.iter().enumerate() {
        let raw = request.raw_input_contents.get(index).map(|raw| raw.as_ref());
        let Some(spec) = signature.inputs.iter().find(|spec| spec.name == input.name) else { continue };
        let width = spec.shape.get(1).copied().unwrap_or(-1);
        if spec.name == CATEGORIES_INPUT_NAME {
            categories = Some(decode_bytes_rows(input, raw, usize::try_from(width).unwrap_or(0))?);
        } else {
            numeric = Some(decode_features(input, raw, width)?);
        }
    }
    let Some((rows, categories)) = categories else {
        return Err(Error::Internal("table signature without categories".into()));
    };
    let numeric = match numeric {
        Some(numeric) if numeric.nrows() != rows => {
            return Err(Error::InvalidArgument(format!(
                "input {:?} has {} rows but {CATEGORIES_INPUT_NAME:?} has {rows}; every input has one row per example",
                modelplane_model::INPUT_NAME,
                numeric.nrows()
            )));
        }
        Some(numeric) => numeric,
        None => Array2::zeros((rows, 0)),
    };
    Ok(Decoded::Table { numeric, categories })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use modelplane_kserve::{Output, TensorData};
    use modelplane_model::{Head, InputKind, Model};
    use modelplane_proto::inference::InferTensorContents;
    use modelplane_proto::inference::model_infer_request::InferInputTensor;

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
    fn a_table_takes_numeric_rows_and_categories_by_name_in_any_order() {
        let mut signature = Model::signature_for(Head::Identity, InputKind::Features(1), 0);
        signature.inputs = Model::input_specs(InputKind::Table { numeric: 1, categorical: 2 });
        let categories = |shape: Vec<i64>, elements: &[&str]| InferInputTensor {
            name: "categories".into(),
            datatype: "BYTES".into(),
            shape,
            contents: Some(InferTensorContents {
                bytes_contents: elements.iter().map(|e| e.as_bytes().to_vec()).collect(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut both = request("FP32", vec![2, 1], vec![0.5, 1.5], false);
        both.inputs.insert(0, categories(vec![2, 2], &["red", "s", "", "m"]));
        match decode_input(&both, &signature).expect("a table") {
            Decoded::Table { numeric, categories } => {
                assert_eq!(numeric.column(0).to_vec(), vec![0.5, 1.5]);
                assert_eq!(categories, vec![b"red".to_vec(), b"s".to_vec(), b"".to_vec(), b"m".to_vec()]);
            }
            other => panic!("expected a table, got {other:?}"),
        }
        let only_numbers = request("FP32", vec![2, 1], vec![0.5, 1.5], false);
        let err = decode_input(&only_numbers, &signature).expect_err("categories missing");
        assert!(err.to_string().starts_with("model expects inputs [\"input\", \"categories\"]"), "{err}");
        let mut rows_differ = request("FP32", vec![1, 1], vec![0.5], false);
        rows_differ.inputs.push(categories(vec![2, 2], &["a", "b", "c", "d"]));
        let err = decode_input(&rows_differ, &signature).expect_err("rows differ");
        assert!(err.to_string().contains("has 1 rows but \"categories\" has 2"), "{err}");
        let mut wide = request("FP32", vec![1, 1], vec![0.5], false);
        wide.inputs.push(categories(vec![1, 3], &["a", "b", "c"]));
        let err = decode_input(&wide, &signature).expect_err("three columns");
        assert!(err.to_string().contains("expected [rows, 2]"), "{err}");
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
        let spec = |name: &str| modelplane_kserve::TensorSpec {
            name: name.into(),
            datatype: Datatype::Fp32,
            shape: vec![-1, 2],
        };
        let signature = modelplane_kserve::Signature { inputs: vec![spec("a"), spec("b")], outputs: Vec::new() };
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
        let spec = modelplane_kserve::TensorSpec { name: "input".into(), datatype: Datatype::Fp32, shape: vec![-1, 2] };
        let onnx = modelplane_kserve::Signature { inputs: vec![spec], outputs: Vec::new() };
        let err = decode_tensors(&two_raw, &onnx).expect_err("two raw for one input");
        assert!(err.to_string().contains("send one per input or none"), "{err}");
    }

    #[test]
    fn onnx_text_inputs_take_bytes_typed_or_raw_and_nothing_else() {
        let texts = || vec![b"paris".to_vec(), b"lyon".to_vec()];
        let typed = onnx_input("BYTES", InferTensorContents { bytes_contents: texts(), ..Default::default() }, "BYTES");
        assert_eq!(typed.expect("typed BYTES"), TensorData::Bytes(texts()));
        let spec = modelplane_kserve::TensorSpec { name: "x".into(), datatype: Datatype::Bytes, shape: vec![-1] };
        let signature = modelplane_kserve::Signature { inputs: vec![spec], outputs: Vec::new() };
        let mut raw = request("BYTES", vec![2], vec![], false);
        raw.inputs[0].name = "x".into();
        raw.raw_input_contents.push(Bytes::from_static(b"\x05\0\0\0paris\x04\0\0\0lyon"));
        assert_eq!(decode_tensors(&raw, &signature).expect("raw BYTES")[0].1, TensorData::Bytes(texts()));
        let one = onnx_input(
            "BYTES",
            InferTensorContents { bytes_contents: vec![b"x".to_vec()], ..Default::default() },
            "BYTES",
        );
        assert!(one.expect_err("one element for two").to_string().contains("has 1 elements"));
        let numbers =
            onnx_input("FP32", InferTensorContents { fp32_contents: vec![1.0, 2.0], ..Default::default() }, "BYTES");
        assert!(numbers.expect_err("numbers for text").to_string().contains("expected BYTES"));
    }

    /// Decodes one ONNX input `x` sent as `datatype` with `contents` for a graph taking `target`.
    fn onnx_input(datatype: &str, contents: InferTensorContents, target: &str) -> Result<TensorData, Error> {
        let spec = modelplane_kserve::TensorSpec {
            name: "x".into(),
            datatype: Datatype::parse(target).expect("a datatype"),
            shape: vec![-1],
        };
        let signature = modelplane_kserve::Signature { inputs: vec![spec], outputs: Vec::new() };
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
        let spec = modelplane_kserve::TensorSpec { name: "input".into(), datatype: Datatype::Fp16, shape: vec![-1] };
        let signature = modelplane_kserve::Signature { inputs: vec![spec], outputs: Vec::new() };
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
