//! What the tree operators make of an ensemble's combined leaf weights: base values,
//! the classifier's label and its binary-case conventions — as onnxruntime's
//! `tree_ensemble_aggregator.h` does it, since that is what skl2onnx and onnxmltools test
//! their exports against.

use super::ensemble::{Aggregate, Scores};
use crate::ml_scores::{PostTransform, SecondClass, probit, write_scores};

/// TreeEnsembleRegressor and opset 5's TreeEnsemble: one value per target.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Regressor {
    pub base_values: Vec<f32>,
    pub post_transform: PostTransform,
    pub aggregate: Aggregate,
    pub trees: usize,
}

/// TreeEnsembleClassifier: a label and one score per class.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Classifier {
    pub base_values: Vec<f32>,
    pub post_transform: PostTransform,
    /// Two classes, and the leaves weigh only one of them.
    pub binary_case: bool,
    pub weights_all_positive: bool,
}

impl Regressor {
    /// One row's outputs (`out.len()` is the number of targets).
    pub fn finish(&self, scores: &Scores, out: &mut [f32]) {
        let trees = self.trees as f32;
        if out.len() == 1 {
            let origin = if self.base_values.len() == 1 { self.base_values[0] } else { 0.0 };
            let value = match self.aggregate {
                Aggregate::Sum => scores.values[0] + origin,
                Aggregate::Average => scores.values[0] / trees + origin,
                Aggregate::Min | Aggregate::Max if scores.scored[0] => scores.values[0] + origin,
                Aggregate::Min | Aggregate::Max => origin,
            };
            out[0] = if self.post_transform == PostTransform::Probit { probit(value) } else { value };
            return;
        }
        let base = (self.base_values.len() == out.len()).then_some(&self.base_values[..]);
        let mut values: Vec<f32> = (0..out.len())
            .map(|target| {
                let base = base.map_or(0.0, |base| base[target]);
                let value = scores.values[target];
                match self.aggregate {
                    Aggregate::Sum => value + base,
                    Aggregate::Average => value / trees + base,
                    Aggregate::Min | Aggregate::Max => base + if scores.scored[target] { value } else { 0.0 },
                }
            })
            .collect();
        write_scores(&mut values, self.post_transform, SecondClass::None);
        out.copy_from_slice(&values);
    }
}

impl Classifier {
    /// One row's scores (`out.len()` is the number of classes) and the index of its label.
    pub fn finish(&self, scores: &Scores, out: &mut [f32]) -> usize {
        let classes = out.len();
        let mut values = scores.values.clone();
        let mut scored = scores.scored.clone();
        let (label, second) = if classes > 2 {
            for (k, base) in self.base_values.iter().enumerate().take(classes) {
                values[k] = if scored[k] { values[k] + base } else { *base };
                scored[k] = true;
            }
            let mut best: Option<usize> = None;
            for k in 0..classes {
                if scored[k] && best.is_none_or(|best| values[k] > values[best]) {
                    best = Some(k);
                }
            }
            (best.unwrap_or(0), SecondClass::None)
        } else {
            let mut second = SecondClass::None;
            match self.base_values.len() {
                2 if scored[1] => {
                    // onnxruntime reads only base_values[1] here and mirrors the score.
                    values[1] = self.base_values[1] + values[0];
                    values[0] = -values[1];
                }
                2 => {
                    values[1] += self.base_values[1];
                    values[0] += self.base_values[0];
                }
                1 => {
                    values[0] += self.base_values[0];
                    if !scored[1] {
                        values.pop();
                    }
                }
                0 => {
                    second = SecondClass::Margin;
                    if !scored[1] {
                        values.pop();
                    }
                }
                _ => {}
            }
            let positive = if values.len() == 2 && scored[1] {
                values[1]
            } else if scored[0] {
                values[0]
            } else {
                0.0
            };
            let (label, binary_second) = self.binary_label(positive);
            (label, binary_second.unwrap_or(second))
        };
        write_scores(&mut values, self.post_transform, second);
        values.resize(classes, 0.0);
        out.copy_from_slice(&values[..classes]);
        label
    }

    /// The label index of a two-class row from its positive score.
    fn binary_label(&self, positive: f32) -> (usize, Option<SecondClass>) {
        match (self.binary_case, self.weights_all_positive) {
            (true, true) if positive > 0.5 => (1, Some(SecondClass::Complement)),
            (true, true) => (0, Some(SecondClass::Complement)),
            (true, false) => (usize::from(positive > 0.0), Some(SecondClass::Margin)),
            (false, _) => (usize::from(positive > 0.0), None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scores(values: &[f32], scored: &[bool]) -> Scores {
        Scores { values: values.to_vec(), scored: scored.to_vec() }
    }

    fn classify(classifier: &Classifier, row: &Scores) -> (usize, Vec<f32>) {
        let mut out = vec![0.0; row.values.len()];
        let label = classifier.finish(row, &mut out);
        (label, out)
    }

    #[test]
    fn a_binary_forest_weighing_only_the_positive_class_answers_one_minus_p_and_p() {
        // skl2onnx writes a binary random forest's positive-class probability in class 0's
        // slot, and only there.
        let forest = Classifier {
            base_values: vec![],
            post_transform: PostTransform::None,
            binary_case: true,
            weights_all_positive: true,
        };
        assert_eq!(classify(&forest, &scores(&[0.75, 0.0], &[true, false])), (1, vec![0.25, 0.75]));
        assert_eq!(classify(&forest, &scores(&[0.25, 0.0], &[true, false])), (0, vec![0.75, 0.25]));
    }

    #[test]
    fn a_binary_boosted_model_turns_its_margin_into_two_logistic_probabilities() {
        // Gradient boosting: one margin (class 0's slot), a prior as base value, LOGISTIC.
        let boosted = Classifier {
            base_values: vec![0.5],
            post_transform: PostTransform::Logistic,
            binary_case: true,
            weights_all_positive: false,
        };
        let (label, out) = classify(&boosted, &scores(&[1.5, 0.0], &[true, false]));
        assert_eq!(label, 1);
        let p = 1.0 / (1.0 + (-2.0f32).exp());
        assert!((out[1] - p).abs() < 1e-7 && (out[0] - (1.0 - p)).abs() < 1e-7, "{out:?}");
        assert_eq!(classify(&boosted, &scores(&[-1.0, 0.0], &[true, false])).0, 0);
    }

    #[test]
    fn many_classes_take_base_values_then_the_highest_score_then_softmax() {
        let multi = Classifier {
            base_values: vec![0.0, 1.0, 0.0],
            post_transform: PostTransform::Softmax,
            binary_case: false,
            weights_all_positive: false,
        };
        let (label, out) = classify(&multi, &scores(&[0.5, 0.0, 0.7], &[true, false, true]));
        assert_eq!(label, 1, "class 1 scores its base value, 1.0");
        assert!((out.iter().sum::<f32>() - 1.0).abs() < 1e-6 && out[1] > out[2] && out[2] > out[0]);
    }

    #[test]
    fn regressors_average_min_and_add_base_values_as_onnxruntime() {
        let mut out = [0.0];
        let average = Regressor {
            base_values: vec![10.0],
            post_transform: PostTransform::None,
            aggregate: Aggregate::Average,
            trees: 4,
        };
        average.finish(&scores(&[8.0], &[true]), &mut out);
        assert_eq!(out, [12.0]);
        let min = Regressor { aggregate: Aggregate::Min, ..average.clone() };
        min.finish(&scores(&[0.0], &[false]), &mut out);
        assert_eq!(out, [10.0], "no tree scored: the base value alone");
        let mut two = [0.0; 2];
        let sum = Regressor { base_values: vec![1.0, 2.0], aggregate: Aggregate::Sum, ..average };
        sum.finish(&scores(&[3.0, 4.0], &[true, true]), &mut two);
        assert_eq!(two, [4.0, 6.0]);
    }

    #[test]
    fn probit_inverts_the_normal_distribution_closely() {
        assert!(probit(0.5).abs() < 1e-6);
        assert!((probit(0.975) - 1.959_964).abs() < 5e-3);
    }
}
