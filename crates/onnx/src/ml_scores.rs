//! Scores as the `ai.onnx.ml` classifiers and regressors finish them, the way
//! onnxruntime's `ml_common.h` does: the post transforms (LOGISTIC, SOFTMAX,
//! SOFTMAX_ZERO, PROBIT) and how a binary model's one score becomes two columns.

use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PostTransform {
    None,
    Logistic,
    Softmax,
    SoftmaxZero,
    Probit,
}

pub(crate) fn post_transform(node: &NodeProto) -> TractResult<PostTransform> {
    Ok(match node.get_attr_opt::<&str>("post_transform")?.unwrap_or("NONE") {
        "NONE" => PostTransform::None,
        "LOGISTIC" => PostTransform::Logistic,
        "SOFTMAX" => PostTransform::Softmax,
        "SOFTMAX_ZERO" => PostTransform::SoftmaxZero,
        "PROBIT" => PostTransform::Probit,
        other => bail!("post_transform {other:?} is not one of NONE, LOGISTIC, SOFTMAX, SOFTMAX_ZERO, PROBIT"),
    })
}

/// How a binary classifier's one score becomes two (onnxruntime's `add_second_class`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SecondClass {
    None,
    /// Weights are probabilities: `[1 - p, p]`.
    Complement,
    /// Weights are margins: `[-m, m]`, or their logistic with LOGISTIC.
    Margin,
}

pub(crate) fn write_scores(values: &mut Vec<f32>, post_transform: PostTransform, second: SecondClass) {
    if values.len() >= 2 {
        match post_transform {
            PostTransform::None => {}
            PostTransform::Logistic => values.iter_mut().for_each(|v| *v = logistic(*v)),
            PostTransform::Softmax => softmax(values),
            PostTransform::SoftmaxZero => softmax_zero(values),
            PostTransform::Probit => values.iter_mut().for_each(|v| *v = probit(*v)),
        }
        return;
    }
    let Some(&score) = values.first() else { return };
    if post_transform == PostTransform::Probit {
        values[0] = probit(score);
        return;
    }
    let logistic_pair = post_transform == PostTransform::Logistic;
    *values = match second {
        SecondClass::None => return,
        SecondClass::Complement => vec![1.0 - score, score],
        SecondClass::Margin if logistic_pair => vec![logistic(-score), logistic(score)],
        SecondClass::Margin => vec![-score, score],
    };
}

pub(crate) fn logistic(value: f32) -> f32 {
    let v = 1.0 / (1.0 + (-value.abs()).exp());
    if value < 0.0 { 1.0 - v } else { v }
}

pub(crate) fn softmax(values: &mut [f32]) {
    let max = values.iter().copied().fold(-f32::MAX, f32::max);
    let mut sum = 0.0;
    for value in values.iter_mut() {
        *value = (*value - max).exp();
        sum += *value;
    }
    values.iter_mut().for_each(|v| *v /= sum);
}

/// Softmax over the non-zero scores; zeros stay (scaled) zeros.
fn softmax_zero(values: &mut [f32]) {
    let max = values.iter().copied().fold(-f32::MAX, f32::max);
    let scale = (-max).exp();
    let mut sum = 0.0;
    for value in values.iter_mut() {
        if value.abs() > 0.000_000_1 {
            *value = (*value - max).exp();
            sum += *value;
        } else {
            *value *= scale;
        }
    }
    values.iter_mut().for_each(|v| *v /= sum);
}

/// `sqrt(2) * erfinv(2p - 1)`, with the same closed-form erfinv approximation as
/// onnxruntime.
pub(crate) fn probit(value: f32) -> f32 {
    let x = 2.0 * value - 1.0;
    let sign = if x < 0.0 { -1.0 } else { 1.0 };
    let log = ((1.0 - x) * (1.0 + x)).ln();
    let v = 2.0 / (std::f32::consts::PI * 0.147) + 0.5 * log;
    let v2 = 1.0 / 0.147 * log;
    std::f32::consts::SQRT_2 * sign * (-v + (v * v - v2).sqrt()).sqrt()
}
