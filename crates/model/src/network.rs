//! Dense layers and output heads: the forward pass shared by training and inference.

use std::sync::Arc;

use ndarray::{Array1, Array2, ArrayView2, Axis, Zip};
use serde::{Deserialize, Serialize};

use crate::packed::PackedWeights;

/// Hidden-layer nonlinearity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// max(0, x).
    Relu,
    /// tanh(x).
    Tanh,
    /// x (used by the last layer, whose head applies the output function).
    Identity,
}

impl Activation {
    /// Applies the function in place.
    pub fn apply(self, z: &mut Array2<f32>) {
        match self {
            Activation::Relu => z.mapv_inplace(|v| v.max(0.0)),
            Activation::Tanh => z.mapv_inplace(f32::tanh),
            Activation::Identity => {}
        }
    }

    /// Multiplies `delta` by the derivative, given the layer's activated output `a`.
    pub fn backprop(self, delta: &mut Array2<f32>, a: &Array2<f32>) {
        // Contiguous slices let the compiler vectorise; Zip is the general fallback.
        if let (Some(d), Some(a)) = (delta.as_slice_mut(), a.as_slice()) {
            match self {
                Activation::Relu => d.iter_mut().zip(a).for_each(|(d, a)| *d = if *a > 0.0 { *d } else { 0.0 }),
                Activation::Tanh => d.iter_mut().zip(a).for_each(|(d, a)| *d *= 1.0 - a * a),
                Activation::Identity => {}
            }
            return;
        }
        match self {
            Activation::Relu => Zip::from(delta).and(a).for_each(|d, a| *d = if *a > 0.0 { *d } else { 0.0 }),
            Activation::Tanh => Zip::from(delta).and(a).for_each(|d, a| *d *= 1.0 - a * a),
            Activation::Identity => {}
        }
    }
}

/// The output function of the last layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Head {
    /// Regression: the values as they are.
    Identity,
    /// Binary classification: one logit → probability of class 1.
    Sigmoid,
    /// Multiclass: one logit per class → probabilities.
    Softmax,
    /// Class probabilities as they come (a forest's mean class shares).
    Probabilities,
    /// A linear SVM's margins: one per class, one-vs-rest (one for two classes, the
    /// positive class's); the label is the largest (for two classes: class 1 if positive).
    Margin,
}

impl Head {
    /// Turns logits into the head's output in place.
    pub fn apply(self, z: &mut Array2<f32>) {
        match self {
            Head::Identity | Head::Probabilities | Head::Margin => {}
            Head::Sigmoid => z.mapv_inplace(sigmoid),
            Head::Softmax => {
                for mut row in z.axis_iter_mut(Axis(0)) {
                    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    row.mapv_inplace(|v| (v - max).exp());
                    let sum = row.sum();
                    row.mapv_inplace(|v| v / sum);
                }
            }
        }
    }
}

/// The logistic function.
pub fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + (-z).exp())
}

/// One fully connected layer: `activation(x · weight + bias)`.
#[derive(Clone, Debug)]
pub struct Dense {
    /// `[inputs, outputs]`.
    pub weight: Array2<f32>,
    /// `[outputs]`.
    pub bias: Array1<f32>,
    /// Applied after the affine map.
    pub activation: Activation,
    /// `weight` laid out for inference ([`Dense::packed_for_inference`]); `None` while
    /// training changes the weights.
    pub packed: Option<Arc<PackedWeights>>,
}

/// Layers are equal when their parameters are; the packed copy is derived from them.
impl PartialEq for Dense {
    fn eq(&self, other: &Self) -> bool {
        self.weight == other.weight && self.bias == other.bias && self.activation == other.activation
    }
}

impl Dense {
    /// A layer without a packed copy of its weights (as training needs it).
    pub fn new(weight: Array2<f32>, bias: Array1<f32>, activation: Activation) -> Self {
        Self { weight, bias, activation, packed: None }
    }

    /// The layer with its weights also packed for [`PackedWeights::product`], which
    /// [`Dense::forward`] then uses: for served batches several times faster than
    /// `dot`, at the cost of a second copy of the weights (unchanged when padding would
    /// bloat it, see [`PackedWeights::worth_packing`]). Only for weights that no longer
    /// change.
    pub fn packed_for_inference(self) -> Self {
        let (inputs, outputs) = self.weight.dim();
        if !PackedWeights::worth_packing(inputs, outputs) {
            return self;
        }
        let packed = Arc::new(PackedWeights::pack(self.weight.view()));
        Self { packed: Some(packed), ..self }
    }

    /// `x · weight + bias`, then the activation.
    pub fn forward(&self, x: ArrayView2<'_, f32>) -> Array2<f32> {
        let packed = self.packed.as_ref().and_then(|packed| packed.product(x));
        let mut z = match packed.or_else(|| few_rows_dot(x, &self.weight)) {
            Some(z) => z,
            None => x.dot(&self.weight),
        };
        // Row by row keeps both sides contiguous; a broadcast add would go element-wise.
        for mut row in z.rows_mut() {
            row += &self.bias;
        }
        self.activation.apply(&mut z);
        z
    }
}

/// Up to this many rows, [`few_rows_dot`] beats the general matrix product.
const FEW_ROWS: usize = 4;

/// `x · weight` for a handful of rows, as one scaled add of a contiguous weight row per
/// input: matrixmultiply packs the whole weight matrix on every call and computes 8-row
/// tiles, so for one row it did ~8x the arithmetic (66 µs for a 256x256 MLP row that
/// takes a few µs this way). `None` when there are more rows or the layout is not
/// row-major, and the caller uses `dot`.
fn few_rows_dot(x: ArrayView2<'_, f32>, weight: &Array2<f32>) -> Option<Array2<f32>> {
    if x.nrows() > FEW_ROWS || x.ncols() != weight.nrows() {
        return None;
    }
    let weights = weight.as_slice()?;
    let outputs = weight.ncols();
    let mut z = Array2::<f32>::zeros((x.nrows(), outputs));
    let z_rows = z.as_slice_mut()?.chunks_exact_mut(outputs.max(1));
    for (x_row, z_row) in x.rows().into_iter().zip(z_rows) {
        for (&input, weight_row) in x_row.iter().zip(weights.chunks_exact(outputs.max(1))) {
            for (out, &w) in z_row.iter_mut().zip(weight_row) {
                *out += input * w;
            }
        }
    }
    Some(z)
}

/// Runs `x` through every layer and the head.
pub fn forward(layers: &[Dense], head: Head, x: ArrayView2<'_, f32>) -> Array2<f32> {
    // The first layer reads the caller's rows in place: no copy of the input.
    let mut out = match layers.split_first() {
        Some((first, rest)) => rest.iter().fold(first.forward(x), |out, layer| layer.forward(out.view())),
        None => x.to_owned(),
    };
    head.apply(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn few_rows_match_the_matrix_product_and_more_rows_use_it() {
        let weight = Array2::from_shape_fn((37, 19), |(i, j)| ((i * 7 + j * 3) % 11) as f32 / 5.0 - 1.0);
        for rows in 1..=FEW_ROWS {
            let x = Array2::from_shape_fn((rows, 37), |(i, j)| ((i * 5 + j) % 13) as f32 / 3.0 - 2.0);
            let fast = few_rows_dot(x.view(), &weight).expect("few rows take the fast path");
            let general = x.dot(&weight);
            assert_eq!(fast.dim(), general.dim());
            for (a, b) in fast.iter().zip(general.iter()) {
                assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{a} vs {b}");
            }
        }
        let many = Array2::<f32>::zeros((FEW_ROWS + 1, 37));
        assert!(few_rows_dot(many.view(), &weight).is_none());
        assert!(few_rows_dot(weight.t(), &weight).is_none(), "shape mismatch is left to dot");
    }
}
