//! Triton's classification extension. A requested output whose parameters carry
//! `classification: k` is answered with its k highest values instead of the values
//! themselves: BYTES strings `<value>:<index>[:<label>]`, highest first, the label where
//! the model names its classes. A batched output (signature shape `[-1, …]`) is ranked
//! row by row into shape `[rows, k]`, any other output as a whole into `[k]`. Asking
//! for more classes than there are gives them all, as Triton does. Only numeric outputs
//! rank: like Triton, FP16, BOOL and BYTES are refused.

use std::cmp::Ordering;
use std::fmt::Display;

use modelplane_kserve::{Datatype, Output, Signature, TensorData};
use modelplane_proto::inference::ModelInferRequest;
use modelplane_proto::inference::infer_parameter::ParameterChoice;

use crate::Error;

/// The parameter of a requested output that asks for classes, as Triton names it.
pub const PARAMETER: &str = "classification";

/// Datatypes whose values rank (Triton's list).
fn ranks(datatype: Datatype) -> bool {
    datatype.is_integer() || matches!(datatype, Datatype::Fp32 | Datatype::Fp64)
}

/// One output to answer with its top classes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Classification {
    /// The output's name.
    pub output: String,
    /// Classes asked for (1 or more).
    pub count: usize,
    /// Whether the output's first dimension is the batch: then each row ranks apart.
    pub batched: bool,
}

/// The classifications `request` asks for, checked against the model's outputs before
/// anything runs. Outputs the model lacks are left to the caller's own check.
pub fn requested(request: &ModelInferRequest, signature: &Signature) -> Result<Vec<Classification>, Error> {
    let mut wanted = Vec::new();
    for output in &request.outputs {
        let Some(parameter) = output.parameters.get(PARAMETER) else { continue };
        let count = match parameter.parameter_choice {
            Some(ParameterChoice::Int64Param(count)) => usize::try_from(count).ok(),
            Some(ParameterChoice::Uint64Param(count)) => usize::try_from(count).ok(),
            _ => None,
        }
        .filter(|count| *count > 0)
        .ok_or_else(|| {
            Error::InvalidArgument(format!(
                "parameter {PARAMETER:?} of output {:?} must be an integer count of classes, 1 or more; got {}",
                output.name,
                modelplane_service::describe_parameter(parameter)
            ))
        })?;
        let Some(spec) = signature.outputs.iter().find(|spec| spec.name == output.name) else { continue };
        if !ranks(spec.datatype) {
            return Err(Error::InvalidArgument(format!(
                "output {:?} is {}, which does not rank; {PARAMETER:?} needs an integer, FP32 or FP64 output",
                output.name, spec.datatype
            )));
        }
        wanted.push(Classification { output: output.name.clone(), count, batched: spec.shape.first() == Some(&-1) });
    }
    Ok(wanted)
}

/// `outputs` with each output in `wanted` replaced by its top classes. `labels` names
/// the classes of an output by index (empty when the model has none for it).
pub fn apply<'a>(
    outputs: Vec<Output>,
    wanted: &[Classification],
    labels: impl Fn(&str) -> &'a [String],
) -> Result<Vec<Output>, Error> {
    if wanted.is_empty() {
        return Ok(outputs);
    }
    outputs
        .into_iter()
        .map(|output| match wanted.iter().find(|w| w.output == output.name) {
            Some(classification) => {
                let labels = labels(&output.name);
                classify(output, classification, labels)
            }
            None => Ok(output),
        })
        .collect()
}

/// One output as its top classes.
fn classify(output: Output, classification: &Classification, labels: &[String]) -> Result<Output, Error> {
    let (items, per_item) = if classification.batched {
        (output.shape.first().copied().unwrap_or(0), output.shape.iter().skip(1).product())
    } else {
        (1, output.shape.iter().product())
    };
    let count = classification.count.min(per_item);
    let table = Table { items, per_item, count, labels };
    let classes = match &output.data {
        TensorData::F32(values) => table.rank(values),
        TensorData::F64(values) => table.rank(values),
        TensorData::I8(values) => table.rank(values),
        TensorData::I16(values) => table.rank(values),
        TensorData::I32(values) => table.rank(values),
        TensorData::I64(values) => table.rank(values),
        TensorData::U8(values) => table.rank(values),
        TensorData::U16(values) => table.rank(values),
        TensorData::U32(values) => table.rank(values),
        TensorData::U64(values) => table.rank(values),
        other => {
            return Err(Error::Internal(format!(
                "output {:?} came out {} although its signature ranks",
                output.name,
                other.datatype()
            )));
        }
    };
    let shape = if classification.batched { vec![items, count] } else { vec![count] };
    Ok(Output { name: output.name, shape, data: TensorData::Bytes(classes) })
}

/// How one output's values split into the items ranked apart.
struct Table<'a> {
    items: usize,
    per_item: usize,
    count: usize,
    labels: &'a [String],
}

impl Table<'_> {
    /// The top `count` classes of every item, item after item.
    fn rank<T: Ranked>(&self, values: &[T]) -> Vec<Vec<u8>> {
        let mut classes = Vec::with_capacity(self.items * self.count);
        if self.per_item == 0 {
            return classes;
        }
        for item in values.chunks_exact(self.per_item).take(self.items) {
            // Highest first; equal values by index, so the answer never varies.
            let first = |a: &usize, b: &usize| T::before(item[*a], item[*b]).then(a.cmp(b));
            let mut order: Vec<usize> = (0..item.len()).collect();
            if self.count < order.len() {
                order.select_nth_unstable_by(self.count, first);
                order.truncate(self.count);
            }
            order.sort_unstable_by(first);
            classes.extend(order.into_iter().map(|index| match self.labels.get(index) {
                Some(label) => format!("{}:{index}:{label}", item[index]).into_bytes(),
                None => format!("{}:{index}", item[index]).into_bytes(),
            }));
        }
        classes
    }
}

/// Values that rank: `before(a, b)` is `Less` when `a` ranks above `b`.
trait Ranked: Copy + Display {
    fn before(a: Self, b: Self) -> Ordering;
}

macro_rules! ranked_integers {
    ($($integer:ty)*) => {$(
        impl Ranked for $integer {
            fn before(a: Self, b: Self) -> Ordering {
                b.cmp(&a)
            }
        }
    )*};
}
ranked_integers!(i8 i16 i32 i64 u8 u16 u32 u64);

macro_rules! ranked_floats {
    ($($float:ty)*) => {$(
        impl Ranked for $float {
            /// NaN ranks below every number: it is no one's best class.
            fn before(a: Self, b: Self) -> Ordering {
                a.is_nan().cmp(&b.is_nan()).then_with(|| b.total_cmp(&a))
            }
        }
    )*};
}
ranked_floats!(f32 f64);

#[cfg(test)]
mod tests {
    use modelplane_kserve::TensorSpec;
    use modelplane_proto::inference::InferParameter;
    use modelplane_proto::inference::model_infer_request::InferRequestedOutputTensor;

    use super::*;

    fn signature() -> Signature {
        let spec = |name: &str, datatype: &str, shape: Vec<i64>| TensorSpec {
            name: name.into(),
            datatype: Datatype::parse(datatype).expect("a datatype"),
            shape,
        };
        Signature {
            inputs: vec![spec("x", "FP32", vec![-1, 2])],
            outputs: vec![
                spec("probabilities", "FP32", vec![-1, 4]),
                spec("label", "BYTES", vec![-1]),
                spec("counts", "INT64", vec![3]),
            ],
        }
    }

    fn asking(output: &str, choice: Option<ParameterChoice>) -> ModelInferRequest {
        let mut requested = InferRequestedOutputTensor { name: output.into(), ..Default::default() };
        requested.parameters.insert(PARAMETER.into(), InferParameter { parameter_choice: choice });
        ModelInferRequest { outputs: vec![requested], ..Default::default() }
    }

    fn strings(output: &Output) -> Vec<String> {
        match &output.data {
            TensorData::Bytes(elements) => elements.iter().map(|e| String::from_utf8_lossy(e).into_owned()).collect(),
            other => panic!("BYTES expected, got {}", other.datatype()),
        }
    }

    #[test]
    fn a_count_must_be_a_positive_integer_on_an_output_that_ranks() {
        let ok = requested(&asking("probabilities", Some(ParameterChoice::Int64Param(2))), &signature());
        assert_eq!(ok.expect("valid"), [Classification { output: "probabilities".into(), count: 2, batched: true }]);
        let unbatched = requested(&asking("counts", Some(ParameterChoice::Uint64Param(1))), &signature());
        assert!(!unbatched.expect("valid")[0].batched, "a fixed first dimension is not a batch");
        for (choice, shown) in [
            (Some(ParameterChoice::Int64Param(0)), "int64_param 0"),
            (Some(ParameterChoice::Int64Param(-3)), "int64_param -3"),
            (Some(ParameterChoice::DoubleParam(2.5)), "double_param 2.5"),
            (Some(ParameterChoice::StringParam("2".into())), "string_param \"2\""),
            (None, "no value"),
        ] {
            let err = requested(&asking("probabilities", choice), &signature()).expect_err(shown);
            assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
            assert!(err.to_string().contains(&format!("1 or more; got {shown}")), "{err}");
        }
        let err = requested(&asking("label", Some(ParameterChoice::Int64Param(1))), &signature()).expect_err("BYTES");
        assert!(err.to_string().contains("output \"label\" is BYTES, which does not rank"), "{err}");
        let plain = ModelInferRequest {
            outputs: vec![InferRequestedOutputTensor { name: "probabilities".into(), ..Default::default() }],
            ..Default::default()
        };
        assert!(requested(&plain, &signature()).expect("valid").is_empty());
    }

    #[test]
    fn each_row_answers_its_highest_values_first_with_index_and_label() {
        let output = Output {
            name: "probabilities".into(),
            shape: vec![2, 4],
            data: TensorData::F32(vec![1.1, 3.3, 0.5, 2.4, 0.0, 0.0, 0.25, 0.75]),
        };
        let wanted = [Classification { output: "probabilities".into(), count: 2, batched: true }];
        let labels = ["cat".to_owned(), "dog".into(), "eel".into(), "fox".into()];
        let answered = apply(vec![output.clone()], &wanted, |_| &labels).expect("ranks");
        assert_eq!(answered[0].shape, [2, 2]);
        assert_eq!(strings(&answered[0]), ["3.3:1:dog", "2.4:3:fox", "0.75:3:fox", "0.25:2:eel"]);
        let unlabelled = apply(vec![output], &wanted, |_| &[]).expect("ranks");
        assert_eq!(strings(&unlabelled[0])[..2], ["3.3:1", "2.4:3"]);
    }

    #[test]
    fn more_classes_than_there_are_gives_all_and_ties_keep_index_order() {
        let output = Output { name: "counts".into(), shape: vec![3], data: TensorData::I64(vec![5, 9, 5]) };
        let other = Output { name: "label".into(), shape: vec![1], data: TensorData::Bytes(vec![b"a".to_vec()]) };
        let wanted = [Classification { output: "counts".into(), count: 10, batched: false }];
        let answered = apply(vec![output, other.clone()], &wanted, |_| &[]).expect("ranks");
        assert_eq!(answered[0].shape, [3]);
        assert_eq!(strings(&answered[0]), ["9:1", "5:0", "5:2"]);
        assert_eq!(answered[1], other, "outputs not asked to classify are left as they are");
    }

    #[test]
    fn nan_ranks_last_and_an_empty_batch_gives_no_classes() {
        let output =
            Output { name: "p".into(), shape: vec![1, 3], data: TensorData::F64(vec![f64::NAN, -1.0, f64::INFINITY]) };
        let wanted = [Classification { output: "p".into(), count: 3, batched: true }];
        assert_eq!(strings(&apply(vec![output], &wanted, |_| &[]).expect("ranks")[0]), ["inf:2", "-1:1", "NaN:0"]);
        let empty = Output { name: "p".into(), shape: vec![0, 3], data: TensorData::F64(Vec::new()) };
        let answered = apply(vec![empty], &wanted, |_| &[]).expect("ranks");
        assert_eq!((answered[0].shape.clone(), strings(&answered[0]).len()), (vec![0, 3], 0));
    }
}
