//! `ai.onnx.ml` SVMClassifier and SVMRegressor (scikit-learn's SVC / SVR / NuSVC as
//! skl2onnx exports them), computed as onnxruntime does: kernels in f32, each
//! one-versus-one decision summed in f64, votes for the label, and with `prob_a` /
//! `prob_b` Platt-scaled pairwise probabilities coupled into one per class (libsvm's
//! method).

use std::sync::Arc;

use tract_onnx::model::{OnnxOpRegister, ParsingContext};
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

use crate::ml_kernel::{Kernel, KernelOp};
use crate::ml_scores::{PostTransform, SecondClass, logistic, post_transform, write_scores};

pub fn register(register: &mut OnnxOpRegister) {
    register.insert("SVMClassifier", classifier);
    register.insert("SVMRegressor", regressor);
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum KernelType {
    Linear,
    Poly { gamma: f32, coef0: f32, degree: f32 },
    Rbf { gamma: f32 },
    Sigmoid { gamma: f32, coef0: f32 },
}

fn kernel_type(node: &NodeProto) -> TractResult<KernelType> {
    let params = node.get_attr_opt_vec::<f32>("kernel_params")?.unwrap_or_default();
    let param = |i: usize| params.get(i).copied().unwrap_or(0.0);
    let (gamma, coef0, degree) = (param(0), param(1), param(2));
    Ok(match node.get_attr_opt::<&str>("kernel_type")?.unwrap_or("LINEAR") {
        "LINEAR" => KernelType::Linear,
        "POLY" => KernelType::Poly { gamma, coef0, degree },
        "RBF" => KernelType::Rbf { gamma },
        "SIGMOID" => KernelType::Sigmoid { gamma, coef0 },
        other => bail!("kernel_type {other:?} is not one of LINEAR, POLY, RBF, SIGMOID"),
    })
}

impl KernelType {
    fn apply(self, x: &[f32], vector: &[f32]) -> f32 {
        let dot = || x.iter().zip(vector).map(|(a, b)| a * b).sum::<f32>();
        match self {
            KernelType::Linear => dot(),
            KernelType::Poly { gamma, coef0, degree } => {
                let base = gamma * dot() + coef0;
                match degree {
                    2.0 => base * base,
                    3.0 => base * base * base,
                    _ => base.powf(degree),
                }
            }
            KernelType::Rbf { gamma } => {
                let distance: f32 = x.iter().zip(vector).map(|(a, b)| (a - b) * (a - b)).sum();
                (-gamma * distance).exp()
            }
            KernelType::Sigmoid { gamma, coef0 } => (gamma * dot() + coef0).tanh(),
        }
    }
}

/// Support vectors (SVC mode) or, with none, one coefficient row per class or target
/// (linear mode, liblinear's).
#[derive(Debug, Clone)]
struct Machine {
    kernel: KernelType,
    support_vectors: Vec<f32>,
    vectors: usize,
    coefficients: Vec<f32>,
    rho: Vec<f32>,
    features: usize,
}

impl Machine {
    fn kernels(&self, x: &[f32], out: &mut Vec<f32>) {
        out.clear();
        out.extend(self.support_vectors.chunks(self.features).map(|vector| self.kernel.apply(x, vector)));
    }
}

fn floats(node: &NodeProto, name: &str) -> TractResult<Vec<f32>> {
    Ok(node.get_attr_opt_vec::<f32>(name)?.unwrap_or_default())
}

fn machine(node: &NodeProto, vectors: usize, rows: usize) -> TractResult<Machine> {
    let support_vectors = floats(node, "support_vectors")?;
    let coefficients = floats(node, "coefficients")?;
    let rho = floats(node, "rho")?;
    ensure!(!coefficients.is_empty(), "the SVM has no coefficients");
    ensure!(!rho.is_empty(), "the SVM has no rho");
    let (kernel, features) = if vectors > 0 {
        ensure!(
            support_vectors.len() % vectors == 0 && !support_vectors.is_empty(),
            "{} support vector values do not split into {vectors} vectors",
            support_vectors.len()
        );
        (kernel_type(node)?, support_vectors.len() / vectors)
    } else {
        ensure!(coefficients.len() % rows == 0, "{} coefficients do not split into {rows} rows", coefficients.len());
        (KernelType::Linear, coefficients.len() / rows)
    };
    Ok(Machine { kernel, support_vectors, vectors, coefficients, rho, features })
}

/// The input's rows as f32 (a rank-1 input is one row), and how many there are.
fn rows_of(input: &Tensor, features: usize, name: &str) -> TractResult<(usize, Vec<f32>)> {
    let rows = if input.rank() == 1 { 1 } else { input.shape()[0] };
    ensure!(input.len() == rows * features, "{name} takes rows of {features} values; got shape {:?}", input.shape());
    let x = input.cast_to::<f32>()?;
    Ok((rows, x.to_plain_array_view::<f32>()?.iter().copied().collect()))
}

#[derive(Debug, Clone)]
struct SvmRegressor {
    machine: Machine,
    one_class: bool,
}

fn regressor(_: &ParsingContext, node: &NodeProto) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let vectors = usize::try_from(node.get_attr_opt::<i64>("n_supports")?.unwrap_or(0))?;
    let machine = machine(node, vectors, 1)?;
    ensure!(
        vectors == 0 || machine.coefficients.len() == vectors,
        "SVMRegressor needs one coefficient per support vector"
    );
    let one_class = node.get_attr_opt::<i64>("one_class")?.unwrap_or(0) != 0;
    Ok((expand(SvmRegressor { machine, one_class }), vec![]))
}

impl Kernel for SvmRegressor {
    fn name(&self) -> &'static str {
        "SVMRegressor"
    }

    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(f32::fact(&[inputs[0].shape[0].clone(), 1.to_dim()])))
    }

    fn eval(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let machine = &self.machine;
        let input = args_1!(inputs);
        let (rows, x) = rows_of(&input, machine.features, "SVMRegressor")?;
        let mut kernels = Vec::with_capacity(machine.vectors);
        let out: Vec<f32> = x
            .chunks(machine.features)
            .map(|row| {
                let score = if machine.vectors > 0 {
                    machine.kernels(row, &mut kernels);
                    kernels.iter().zip(&machine.coefficients).map(|(k, c)| k * c).sum::<f32>() + machine.rho[0]
                } else {
                    KernelType::Linear.apply(row, &machine.coefficients) + machine.rho[0]
                };
                if self.one_class { if score > 0.0 { 1.0 } else { -1.0 } } else { score }
            })
            .collect();
        Ok(tvec!(Tensor::from_shape(&[rows, 1], &out)?.into_tvalue()))
    }
}

#[derive(Debug, Clone)]
struct SvmClassifier {
    machine: Machine,
    labels: Arc<Tensor>,
    vectors_per_class: Vec<usize>,
    prob_a: Vec<f32>,
    prob_b: Vec<f32>,
    post_transform: PostTransform,
    weights_all_positive: bool,
}

fn classifier(_: &ParsingContext, node: &NodeProto) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let labels = match (
        node.get_attr_opt_vec::<i64>("classlabels_ints")?,
        node.get_attr_opt_vec::<String>("classlabels_strings")?,
    ) {
        (Some(ints), None) => rctensor1(&ints),
        (None, Some(strings)) => rctensor1(&strings),
        _ => bail!("SVMClassifier takes exactly one of classlabels_ints and classlabels_strings"),
    };
    let classes = labels.len();
    ensure!(classes >= 2, "SVMClassifier has {classes} class label; it needs two or more");
    let vectors_per_class: Vec<usize> = node
        .get_attr_opt_vec::<i64>("vectors_per_class")?
        .unwrap_or_default()
        .into_iter()
        .map(usize::try_from)
        .collect::<Result<_, _>>()?;
    let vectors: usize = vectors_per_class.iter().sum();
    let machine = machine(node, vectors, classes)?;
    let pairs = classes * (classes - 1) / 2;
    if vectors > 0 {
        ensure!(
            vectors_per_class.len() == classes,
            "vectors_per_class has {} entries for {classes} classes",
            vectors_per_class.len()
        );
        ensure!(
            machine.coefficients.len() == (classes - 1) * vectors,
            "SVMClassifier needs (classes - 1) x support vectors coefficients"
        );
        ensure!(machine.rho.len() >= pairs, "SVMClassifier needs one rho per pair of classes ({pairs})");
    }
    let prob_a = floats(node, "prob_a")?;
    let prob_b = floats(node, "prob_b")?;
    ensure!(prob_a.len() == prob_b.len(), "prob_a and prob_b differ in length");
    ensure!(prob_a.is_empty() || prob_a.len() >= pairs, "prob_a needs one value per pair of classes ({pairs})");
    let weights_all_positive = machine.coefficients.iter().all(|c| *c >= 0.0);
    let post_transform = post_transform(node)?;
    let op = SvmClassifier { machine, labels, vectors_per_class, prob_a, prob_b, post_transform, weights_all_positive };
    Ok((expand(op), vec![]))
}

impl SvmClassifier {
    fn classes(&self) -> usize {
        self.labels.len()
    }

    /// Columns of the scores output: one per class, except an SVC without probabilities,
    /// which answers its one-versus-one decisions (two columns for two classes).
    fn score_columns(&self) -> usize {
        let classes = self.classes();
        if self.machine.vectors > 0 && self.prob_a.is_empty() { (classes * (classes - 1) / 2).max(2) } else { classes }
    }

    /// One row: the label index and the scores.
    fn row(&self, x: &[f32], kernels: &mut Vec<f32>) -> (usize, Vec<f32>) {
        let machine = &self.machine;
        let classes = self.classes();
        if machine.vectors == 0 {
            let mut scores: Vec<f32> = machine
                .coefficients
                .chunks(machine.features)
                .map(|row| KernelType::Linear.apply(x, row) + machine.rho[0])
                .collect();
            let best = first_max(&scores);
            let label = if classes == 2 {
                let weight = scores[best];
                if (self.weights_all_positive && weight >= 0.5) || (!self.weights_all_positive && weight > 0.0) {
                    1
                } else {
                    best
                }
            } else {
                best
            };
            write_scores(&mut scores, self.post_transform, SecondClass::None);
            return (label, scores);
        }
        machine.kernels(x, kernels);
        let mut starts = Vec::with_capacity(classes);
        let mut start = 0;
        for &count in &self.vectors_per_class {
            starts.push(start);
            start += count;
        }
        let mut decisions = Vec::with_capacity(classes * (classes - 1) / 2);
        let mut votes = vec![0usize; classes];
        for i in 0..classes {
            for j in i + 1..classes {
                let side = |row: usize, class: usize| -> f64 {
                    let span = starts[class]..starts[class] + self.vectors_per_class[class];
                    let coefficients = &machine.coefficients[row * machine.vectors..][span.clone()];
                    coefficients.iter().zip(&kernels[span]).map(|(c, k)| f64::from(*c) * f64::from(*k)).sum()
                };
                let sum = side(j - 1, i) + side(i, j) + f64::from(machine.rho[decisions.len()]);
                decisions.push(sum as f32);
                votes[if sum > 0.0 { i } else { j }] += 1;
            }
        }
        let label = first_max(&votes);
        if self.prob_a.is_empty() {
            let mut scores = decisions;
            let second =
                if self.post_transform == PostTransform::None { SecondClass::Margin } else { SecondClass::Complement };
            write_scores(&mut scores, self.post_transform, if classes == 2 { second } else { SecondClass::None });
            return (label, scores);
        }
        let mut pairwise = vec![0f32; classes * classes];
        let mut index = 0;
        for i in 0..classes {
            for j in i + 1..classes {
                let p = (1.0 - logistic(decisions[index] * self.prob_a[index] + self.prob_b[index]))
                    .clamp(1e-7, 1.0 - 1e-7);
                pairwise[i * classes + j] = p;
                pairwise[j * classes + i] = 1.0 - p;
                index += 1;
            }
        }
        let mut probabilities = multiclass_probability(classes, &pairwise);
        write_scores(&mut probabilities, self.post_transform, SecondClass::None);
        (label, probabilities)
    }
}

/// The index of the first largest value.
fn first_max<T: PartialOrd + Copy>(values: &[T]) -> usize {
    let mut best = 0;
    for (index, value) in values.iter().enumerate() {
        if *value > values[best] {
            best = index;
        }
    }
    best
}

/// Couples pairwise probabilities `r[i][j]` (P(i | i or j)) into one per class: the
/// iterative method of Wu, Lin and Weng that libsvm uses, in f32 as onnxruntime runs it.
fn multiclass_probability(k: usize, r: &[f32]) -> Vec<f32> {
    let mut q = vec![0f32; k * k];
    let mut qp = vec![0f32; k];
    let mut p = vec![1.0 / k as f32; k];
    let eps = 0.005 / k as f32;
    for i in 0..k {
        for j in 0..i {
            q[i * k + i] += r[j * k + i] * r[j * k + i];
            q[i * k + j] = q[j * k + i];
        }
        for j in i + 1..k {
            q[i * k + i] += r[j * k + i] * r[j * k + i];
            q[i * k + j] = -r[j * k + i] * r[i * k + j];
        }
    }
    for _ in 0..100 {
        let mut pqp = 0f32;
        for i in 0..k {
            qp[i] = (0..k).map(|j| q[i * k + j] * p[j]).sum();
            pqp += p[i] * qp[i];
        }
        let max_error = (0..k).map(|i| (qp[i] - pqp).abs()).fold(0f32, f32::max);
        if max_error < eps {
            break;
        }
        for i in 0..k {
            let diff = (-qp[i] + pqp) / q[i * k + i];
            p[i] += diff;
            pqp = (pqp + diff * (diff * q[i * k + i] + 2.0 * qp[i])) / (1.0 + diff) / (1.0 + diff);
            for j in 0..k {
                qp[j] = (qp[j] + diff * q[i * k + j]) / (1.0 + diff);
                p[j] /= 1.0 + diff;
            }
        }
    }
    p
}

impl Kernel for SvmClassifier {
    fn name(&self) -> &'static str {
        "SVMClassifier"
    }

    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let rows = inputs[0].shape[0].clone();
        Ok(tvec!(
            self.labels.datum_type().fact(std::slice::from_ref(&rows)),
            f32::fact(&[rows, self.score_columns().to_dim()])
        ))
    }

    fn eval(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let (rows, x) = rows_of(&input, self.machine.features, "SVMClassifier")?;
        let columns = self.score_columns();
        let mut kernels = Vec::with_capacity(self.machine.vectors);
        let mut labels = Vec::with_capacity(rows);
        let mut scores = Vec::with_capacity(rows * columns);
        for row in x.chunks(self.machine.features) {
            let (label, mut row_scores) = self.row(row, &mut kernels);
            row_scores.resize(columns, 0.0);
            labels.push(label as i64);
            scores.extend(row_scores);
        }
        let labels = crate::ml_tree::pick(&self.labels, &tensor1(&labels))?;
        Ok(tvec!(labels.into_tvalue(), Tensor::from_shape(&[rows, columns], &scores)?.into_tvalue()))
    }
}

/// The rules both SVM operators share: rows in, `outputs` outputs with the rows' count
/// first, the last FP32 of `columns` columns.
fn svm_rules<'r, 'p: 'r>(
    solver: &mut Solver<'r>,
    inputs: &'p [TensorProxy],
    outputs: &'p [TensorProxy],
    columns: usize,
    labels: Option<DatumType>,
) -> InferenceResult {
    check_input_arity(inputs, 1)?;
    check_output_arity(outputs, if labels.is_some() { 2 } else { 1 })?;
    let scores = outputs.last().expect("one output or more");
    solver.equals(&scores.datum_type, f32::datum_type())?;
    solver.equals(&scores.rank, 2)?;
    solver.equals(&scores.shape[0], &inputs[0].shape[0])?;
    solver.equals(&scores.shape[1], columns.to_dim())?;
    if let Some(labels) = labels {
        solver.equals(&outputs[0].datum_type, labels)?;
        solver.equals(&outputs[0].rank, 1)?;
        solver.equals(&outputs[0].shape[0], &inputs[0].shape[0])?;
    }
    Ok(())
}

impl Expansion for SvmRegressor {
    fn name(&self) -> StaticName {
        "SVMRegressor".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        solver: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        svm_rules(solver, inputs, outputs, 1, None)
    }

    fn wire(&self, prefix: &str, model: &mut TypedModel, inputs: &[OutletId]) -> TractResult<TVec<OutletId>> {
        model.wire_node(prefix, KernelOp(Arc::new(self.clone())), inputs)
    }
}

impl Expansion for SvmClassifier {
    fn name(&self) -> StaticName {
        "SVMClassifier".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        solver: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        svm_rules(solver, inputs, outputs, self.score_columns(), Some(self.labels.datum_type()))
    }

    fn nboutputs(&self) -> TractResult<usize> {
        Ok(2)
    }

    fn wire(&self, prefix: &str, model: &mut TypedModel, inputs: &[OutletId]) -> TractResult<TVec<OutletId>> {
        model.wire_node(prefix, KernelOp(Arc::new(self.clone())), inputs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coupled_probabilities_follow_the_pairwise_ones_and_sum_to_one() {
        // Class 0 beats both others 90% of the time; 1 and 2 tie.
        let r = [0.0, 0.9, 0.9, 0.1, 0.0, 0.5, 0.1, 0.5, 0.0];
        let p = multiclass_probability(3, &r);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-5, "{p:?}");
        // Equal to within the method's stopping tolerance (0.005 / classes).
        assert!(p[0] > 0.7 && (p[1] - p[2]).abs() < 0.005 / 3.0, "{p:?}");
    }

    #[test]
    fn kernels_compute_as_libsvm_defines_them() {
        let (x, v) = ([1.0, 2.0], [3.0, -1.0]);
        assert_eq!(KernelType::Linear.apply(&x, &v), 1.0);
        assert_eq!(KernelType::Poly { gamma: 0.5, coef0: 1.0, degree: 2.0 }.apply(&x, &v), 2.25);
        assert!((KernelType::Rbf { gamma: 0.1 }.apply(&x, &v) - (-1.3f32).exp()).abs() < 1e-7);
        assert!((KernelType::Sigmoid { gamma: 1.0, coef0: 0.0 }.apply(&x, &v) - 1f32.tanh()).abs() < 1e-7);
    }
}
