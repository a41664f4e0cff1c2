//! `modelplane predict`: one request through the router, read from JSON rows or texts.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use modelplane_kserve::Datatype;
use modelplane_proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use modelplane_proto::inference::model_infer_request::InferInputTensor;
use modelplane_proto::inference::{InferTensorContents, ModelInferRequest, ModelMetadataRequest};

use super::{channel, status_error};
use crate::Endpoints;

#[derive(Args)]
pub struct PredictArgs {
    /// Model name.
    pub model: String,
    /// Version number or alias (default: the deployment's target).
    #[arg(long, default_value = "")]
    pub version: String,
    /// JSON file with one row `[1.0, 2.0]` or rows `[[1.0, 2.0], [3.0, 4.0]]`; for text
    /// models an array of strings `["first text", "second text"]`.
    #[arg(long)]
    pub input: PathBuf,
}

/// Rows from `[1, 2]` (one row) or `[[1, 2], [3, 4]]`, each value read by `read`
/// (`what` names what it accepts).
fn parse_rows<T>(text: &str, what: &str, read: impl Fn(&serde_json::Value) -> Option<T>) -> Result<Vec<Vec<T>>> {
    let value: serde_json::Value = serde_json::from_str(text).context("input is not JSON")?;
    let as_row = |v: &serde_json::Value| -> Result<Vec<T>> {
        v.as_array()
            .with_context(|| format!("expected an array of {what}"))?
            .iter()
            .map(|x| read(x).with_context(|| format!("expected {what}; got {x}")))
            .collect()
    };
    let rows = match value.as_array() {
        Some(items) if items.first().is_some_and(serde_json::Value::is_array) => {
            items.iter().map(as_row).collect::<Result<Vec<_>>>()?
        }
        Some(_) => vec![as_row(&value)?],
        None => bail!("input must be a JSON array: one row [..] or rows [[..], [..]]"),
    };
    let width = rows.first().map(Vec::len).unwrap_or(0);
    if rows.iter().any(|r| r.len() != width) {
        bail!("every row must have the same number of values");
    }
    Ok(rows)
}

pub async fn predict(args: PredictArgs, endpoints: &Endpoints) -> Result<()> {
    let text = tokio::fs::read_to_string(&args.input)
        .await
        .with_context(|| format!("cannot read {}", args.input.display()))?;
    let mut client = GrpcInferenceServiceClient::new(channel(endpoints, &endpoints.router)?);
    let metadata = client
        .model_metadata(ModelMetadataRequest { name: args.model.clone(), version: args.version.clone() })
        .await
        .map_err(|s| status_error("model metadata failed", s))?
        .into_inner();
    if metadata.inputs.iter().any(|input| input.name == modelplane_model::CATEGORIES_INPUT_NAME) {
        let inputs = table_inputs(&text, &metadata)?;
        return send(&mut client, &args, inputs, Vec::new()).await;
    }
    let input = metadata.inputs.first().context("the model declares no input")?;
    let mut raw_input_contents = Vec::new();
    let declared: Datatype = input.datatype.parse().context("the model's metadata names an unknown input datatype")?;
    let (datatype, shape, contents) = if declared == Datatype::Bytes {
        let texts: Vec<String> = serde_json::from_str(&text).context("a text model takes a JSON array of strings")?;
        let shape = vec![texts.len() as i64];
        let bytes_contents = texts.into_iter().map(String::into_bytes).collect();
        (Datatype::Bytes, shape, Some(InferTensorContents { bytes_contents, ..Default::default() }))
    } else if declared.is_integer() {
        // Integer inputs (an ONNX model's token ids) travel as INT64, exact at any size;
        // the worker narrows them to the model's type when they fit.
        let rows = parse_rows(&text, "integers", serde_json::Value::as_i64)?;
        let shape = vec![rows.len() as i64, rows.first().map_or(0, Vec::len) as i64];
        (Datatype::Int64, shape, Some(InferTensorContents { int64_contents: rows.concat(), ..Default::default() }))
    } else if declared == Datatype::Fp16 {
        // FP16 travels raw only. The numbers are rounded to the nearest FP16, as numpy's
        // float16 arrays are: decimal text such as 0.1 has no exact FP16 form.
        let rows = parse_rows(&text, "numbers", serde_json::Value::as_f64)?;
        let shape = vec![rows.len() as i64, rows.first().map_or(0, Vec::len) as i64];
        raw_input_contents.push(rows.concat().into_iter().flat_map(|v| half::f16::from_f64(v).to_le_bytes()).collect());
        (Datatype::Fp16, shape, None)
    } else {
        let rows = parse_rows(&text, "numbers", |x| x.as_f64().map(|f| f as f32))?;
        let shape = vec![rows.len() as i64, rows.first().map_or(0, Vec::len) as i64];
        (Datatype::Fp32, shape, Some(InferTensorContents { fp32_contents: rows.concat(), ..Default::default() }))
    };
    let tensor = InferInputTensor {
        name: input.name.clone(),
        datatype: datatype.name().into(),
        shape,
        contents,
        ..Default::default()
    };
    send(&mut client, &args, vec![tensor], raw_input_contents).await
}

/// Rows of a model with categorical columns, e.g. `[[31, "red"], [58, "blue"]]`: the
/// numbers go to `input` and the strings to `categories`, each in the order given
/// (`""` for a missing category).
fn table_inputs(
    text: &str,
    metadata: &modelplane_proto::inference::ModelMetadataResponse,
) -> Result<Vec<InferInputTensor>> {
    let rows = parse_rows(text, "numbers and strings", |x| (x.is_number() || x.is_string()).then(|| x.clone()))?;
    let width =
        |name: &str| metadata.inputs.iter().find(|i| i.name == name).and_then(|i| i.shape.get(1)).copied().unwrap_or(0);
    let (numeric, categorical) = (width(modelplane_model::INPUT_NAME), width(modelplane_model::CATEGORIES_INPUT_NAME));
    let (mut numbers, mut categories) = (Vec::new(), Vec::new());
    for row in &rows {
        let before = (numbers.len(), categories.len());
        for value in row {
            match value {
                serde_json::Value::String(category) => categories.push(category.clone().into_bytes()),
                number => numbers.push(number.as_f64().unwrap_or(f64::NAN) as f32),
            }
        }
        if (numbers.len() - before.0) as i64 != numeric || (categories.len() - before.1) as i64 != categorical {
            bail!("each row needs {numeric} numbers and {categorical} strings (the categorical columns)");
        }
    }
    let rows = rows.len() as i64;
    let mut inputs = vec![InferInputTensor {
        name: modelplane_model::CATEGORIES_INPUT_NAME.into(),
        datatype: Datatype::Bytes.name().into(),
        shape: vec![rows, categorical],
        contents: Some(InferTensorContents { bytes_contents: categories, ..Default::default() }),
        ..Default::default()
    }];
    if numeric > 0 {
        inputs.insert(
            0,
            InferInputTensor {
                name: modelplane_model::INPUT_NAME.into(),
                datatype: Datatype::Fp32.name().into(),
                shape: vec![rows, numeric],
                contents: Some(InferTensorContents { fp32_contents: numbers, ..Default::default() }),
                ..Default::default()
            },
        );
    }
    Ok(inputs)
}

/// Sends one request and prints the outputs as JSON.
async fn send(
    client: &mut GrpcInferenceServiceClient<super::TracedChannel>,
    args: &PredictArgs,
    inputs: Vec<InferInputTensor>,
    raw_input_contents: Vec<bytes::Bytes>,
) -> Result<()> {
    let request = ModelInferRequest {
        model_name: args.model.clone(),
        model_version: args.version.clone(),
        inputs,
        raw_input_contents,
        ..Default::default()
    };
    let response = client.model_infer(request).await.map_err(|s| status_error("inference failed", s))?.into_inner();
    let outputs = response
        .outputs
        .iter()
        .enumerate()
        .map(|(index, o)| {
            // Raw when the request was, or when an output (FP16) has no typed form.
            let data = match response.raw_output_contents.get(index) {
                Some(raw) => modelplane_kserve::json::raw_output_json(&o.datatype, raw)
                    .map_err(|err| anyhow::anyhow!("output {:?}: {err}", o.name))?,
                None => modelplane_kserve::json::typed_output_json(&o.datatype, o.contents.clone().unwrap_or_default()),
            };
            Ok(serde_json::json!({ "name": o.name, "datatype": o.datatype, "shape": o.shape, "data": data }))
        })
        .collect::<Result<Vec<serde_json::Value>>>()?;
    println!(
        "{}",
        serde_json::json!({ "model_name": response.model_name, "model_version": response.model_version, "outputs": outputs })
    );
    Ok(())
}
