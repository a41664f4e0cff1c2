//! A dense layer's weights laid out once for inference, and the product with them.
//!
//! `ndarray::dot` (matrixmultiply) packs the whole weight matrix into its own layout on
//! every call: for the one to a few dozen rows a served batch has, that pass over the
//! weights costs more than the arithmetic (a 2048x2048 layer: 5.6 ms for one row, 7.1 ms
//! for 13; docs/benchmarks.md). Here the weights are packed when a model is loaded, in
//! panels of [`PANEL`] output columns with each input's [`PANEL`] weights contiguous, and
//! each panel is streamed once per [`ROW_TILE`] rows with the accumulators in registers.
//! `pulp` picks the widest SIMD the CPU has (AVX2+FMA, SSE, NEON) at run time; the
//! multiply-add is fused only where the CPU has FMA, never emulated. A big product is
//! split by panels over rayon's threads, so one batch (or one row of a wide layer, which
//! is bound by streaming the weights) uses every core and each core streams only its share.

use std::ops::Range;

use ndarray::{Array2, ArrayView2};
use pulp::{Simd, WithSimd};
use rayon::prelude::*;

/// Output columns per panel: two AVX2 vectors of f32.
const PANEL: usize = 16;
/// Rows of the input multiplied together against one panel: with AVX2, 6 rows of two
/// vectors are 12 independent sums, which with the two weight vectors and a broadcast
/// fill the 16 registers (13 rows of a 2048x2048 layer: 26 GFLOP/s in tiles of 4, 4, 4
/// and 1 rows; 30 in tiles of 5, 4 and 4; docs/benchmarks.md).
const ROW_TILE: usize = 6;

/// Weights `[inputs, outputs]` in panels of [`PANEL`] columns (the last one padded with
/// zeros): panel `p` holds, input by input, the weights of columns `p*PANEL..`.
#[derive(Debug)]
pub struct PackedWeights {
    panels: Vec<f32>,
    inputs: usize,
    outputs: usize,
}

/// Padding the last panel may multiply a narrow layer's size (a 65,536-input text
/// model with 3 classes would grow 5x); such layers stay unpacked unless still small.
const SMALL_ENOUGH_TO_PAD: usize = 16 * 1024;

impl PackedWeights {
    /// Whether packing pays for a `[inputs, outputs]` layer: the padded panels are at
    /// most twice the weights, or small anyway.
    pub fn worth_packing(inputs: usize, outputs: usize) -> bool {
        let padded = outputs.div_ceil(PANEL) * PANEL * inputs;
        padded <= 2 * inputs * outputs || padded <= SMALL_ENOUGH_TO_PAD
    }

    /// Packs `weight` (`[inputs, outputs]`, any layout).
    pub fn pack(weight: ArrayView2<'_, f32>) -> Self {
        let (inputs, outputs) = weight.dim();
        let mut panels = vec![0.0; outputs.div_ceil(PANEL) * inputs * PANEL];
        for (p, panel) in panels.chunks_exact_mut((inputs * PANEL).max(1)).enumerate() {
            for (input, packed) in panel.chunks_exact_mut(PANEL).enumerate() {
                let first = p * PANEL;
                let columns = PANEL.min(outputs - first);
                for (column, value) in packed[..columns].iter_mut().enumerate() {
                    *value = weight[[input, first + column]];
                }
            }
        }
        Self { panels, inputs, outputs }
    }

    /// Bytes the packed panels take (padding included).
    pub fn memory_bytes(&self) -> usize {
        self.panels.len() * std::mem::size_of::<f32>()
    }

    /// `x · weight` for `x` of shape `[rows, inputs]`; `None` when `x` has another number
    /// of columns. A product of a million multiply-adds or more is split by panels
    /// over rayon's threads: each streams only its share of the weights, so one big
    /// batch (or one row of a wide layer, bound by memory) uses every core.
    pub fn product(&self, x: ArrayView2<'_, f32>) -> Option<Array2<f32>> {
        if x.ncols() != self.inputs {
            return None;
        }
        let x = x.as_standard_layout();
        let rows = x.nrows();
        // Standard layout, so the slice exists.
        let x = x.as_slice()?;
        let panels = self.outputs.div_ceil(PANEL);
        let threads = rayon::current_num_threads().min(panels);
        if threads <= 1 || rows * self.inputs * self.outputs < PARALLEL_MULTIPLY_ADDS {
            let mut z = vec![0.0; rows * self.outputs];
            self.block(0..panels).multiply(x, &mut z);
            return Array2::from_shape_vec((rows, self.outputs), z).ok();
        }
        let per_thread = panels.div_ceil(threads);
        let mut blocks: Vec<(Block<'_>, Vec<f32>)> = (0..panels)
            .step_by(per_thread)
            .map(|first| {
                let block = self.block(first..panels.min(first + per_thread));
                let values = vec![0.0; rows * block.columns];
                (block, values)
            })
            .collect();
        blocks.par_iter_mut().for_each(|(block, values)| block.multiply(x, values));
        // Each block holds its columns row by row; lay them side by side, row by row.
        let mut z = Vec::with_capacity(rows * self.outputs);
        for row in 0..rows {
            for (block, values) in &blocks {
                z.extend_from_slice(&values[row * block.columns..(row + 1) * block.columns]);
            }
        }
        Array2::from_shape_vec((rows, self.outputs), z).ok()
    }

    /// The panels `range`, as a product of its own.
    fn block(&self, range: Range<usize>) -> Block<'_> {
        Block {
            panels: &self.panels[range.start * self.inputs * PANEL..range.end * self.inputs * PANEL],
            inputs: self.inputs,
            columns: (range.end * PANEL).min(self.outputs) - range.start * PANEL,
        }
    }
}

/// Multiply-adds (rows × inputs × outputs) from which a product is split over threads:
/// one row of a 1024x1024 layer (1.6x faster split, `benches/dense_product.rs`). Below
/// it the gain is within noise or a loss (13 rows of a 256x256 layer, 0.85 million,
/// ~40 µs: 0.03–0.06 ms on one thread, 0.04–0.05 split), as waking another thread and
/// waiting for it costs what the split saves.
const PARALLEL_MULTIPLY_ADDS: usize = 1 << 20;

/// Consecutive panels of packed weights: `columns` consecutive output columns.
struct Block<'a> {
    panels: &'a [f32],
    inputs: usize,
    columns: usize,
}

impl Block<'_> {
    /// `z = x · block`, `z` of shape `[rows, columns]`.
    fn multiply(&self, x: &[f32], z: &mut [f32]) {
        pulp::Arch::new().dispatch(Product { x, block: self, z });
    }
}

/// One product, run by `pulp` with the CPU's SIMD.
struct Product<'a> {
    x: &'a [f32],
    block: &'a Block<'a>,
    z: &'a mut [f32],
}

impl WithSimd for Product<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let Product { x, block, z } = self;
        let (inputs, outputs) = (block.inputs, block.columns);
        if inputs == 0 || outputs == 0 {
            return;
        }
        let rows = x.len() / inputs;
        for (p, panel) in block.panels.chunks_exact(inputs * PANEL).enumerate() {
            let first_column = p * PANEL;
            let mut row = 0;
            for size in tile_sizes(rows) {
                // Direct calls, not a function pointer: each must inline into this
                // function to run with the SIMD features `pulp` enabled for it.
                match size {
                    1 => tile::<S, 1>(simd, x, inputs, panel, z, outputs, row, first_column),
                    2 => tile::<S, 2>(simd, x, inputs, panel, z, outputs, row, first_column),
                    3 => tile::<S, 3>(simd, x, inputs, panel, z, outputs, row, first_column),
                    4 => tile::<S, 4>(simd, x, inputs, panel, z, outputs, row, first_column),
                    5 => tile::<S, 5>(simd, x, inputs, panel, z, outputs, row, first_column),
                    _ => tile::<S, ROW_TILE>(simd, x, inputs, panel, z, outputs, row, first_column),
                }
                row += size;
            }
        }
    }
}

/// Splits `rows` into the fewest tiles of at most [`ROW_TILE`] rows, as even as can be:
/// 13 rows are 5 + 4 + 4, not 6 + 6 + 1, because a tile of one row waits on its own
/// multiply-adds' latency and takes about as long as a full one.
fn tile_sizes(rows: usize) -> impl Iterator<Item = usize> {
    let tiles = rows.div_ceil(ROW_TILE);
    (0..tiles).map(move |t| rows / tiles + usize::from(t < rows % tiles))
}

/// Rows `first_row..first_row + R` times one panel, into `z`'s columns `first_column..`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn tile<S: Simd, const R: usize>(
    simd: S,
    x: &[f32],
    inputs: usize,
    panel: &[f32],
    z: &mut [f32],
    outputs: usize,
    first_row: usize,
    first_column: usize,
) {
    let lanes = S::F32_LANES;
    let vectors = PANEL / lanes;
    let zero = simd.splat_f32s(0.0);
    let mut sums = [[zero; PANEL]; R];
    let x_rows: [&[f32]; R] = std::array::from_fn(|r| &x[(first_row + r) * inputs..(first_row + r + 1) * inputs]);
    let (weights, _) = S::as_simd_f32s(panel);
    for (input, weights) in weights.chunks_exact(vectors).enumerate() {
        for (sums, x_row) in sums.iter_mut().zip(&x_rows) {
            let value = simd.splat_f32s(x_row[input]);
            for (sum, &weight) in sums.iter_mut().zip(weights) {
                *sum = simd.mul_add_e_f32s(value, weight, *sum);
            }
        }
    }
    let columns = PANEL.min(outputs - first_column);
    for (r, sums) in sums.iter().enumerate() {
        let start = (first_row + r) * outputs + first_column;
        let out = &mut z[start..start + columns];
        for (v, &sum) in sums[..vectors].iter().enumerate() {
            let lane_start = v * lanes;
            if lane_start >= columns {
                break;
            }
            simd.partial_store_f32s(&mut out[lane_start..columns.min(lane_start + lanes)], sum);
        }
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{Array2, ShapeBuilder};

    use super::*;

    fn matrix(rows: usize, cols: usize, seed: usize) -> Array2<f32> {
        Array2::from_shape_fn((rows, cols), |(i, j)| ((i * 31 + j * 17 + seed) % 23) as f32 * 0.125 - 1.0)
    }

    #[test]
    fn the_product_matches_ndarray_for_every_shape_and_layout() {
        for inputs in [1, 3, 16, 17, 40] {
            for outputs in [1, 4, 15, 16, 17, 33, 64] {
                let weight = matrix(inputs, outputs, 1);
                let packed = PackedWeights::pack(weight.view());
                for rows in [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13] {
                    let x = matrix(rows, inputs, 2);
                    let want = x.dot(&weight);
                    let got = packed.product(x.view()).expect("the shapes fit");
                    assert_eq!(got.dim(), want.dim());
                    for (g, w) in got.iter().zip(&want) {
                        assert!((g - w).abs() <= 1e-4 * (1.0 + w.abs()), "{inputs}x{outputs}, {rows} rows: {g} vs {w}");
                    }
                }
            }
        }
        // A column-major input and a column-major weight give the same answer.
        let weight = matrix(20, 18, 3);
        let mut weight_f = Array2::<f32>::zeros((20, 18).f());
        weight_f.assign(&weight);
        let mut x_f = Array2::<f32>::zeros((6, 20).f());
        x_f.assign(&matrix(6, 20, 4));
        let got = PackedWeights::pack(weight_f.view()).product(x_f.view()).expect("fits");
        let want = x_f.dot(&weight);
        assert!(got.iter().zip(&want).all(|(g, w)| (g - w).abs() <= 1e-4 * (1.0 + w.abs())));
    }

    /// How many vectors a panel row takes depends on the vector width; the width a CPU
    /// without AVX gets (4 lanes) and the scalar fallback (1 lane) give the same answers.
    #[test]
    fn narrower_vectors_give_the_same_product() {
        fn with<S: Simd>(simd: S, x: &Array2<f32>, packed: &PackedWeights) -> Array2<f32> {
            let mut z = Array2::<f32>::zeros((x.nrows(), packed.outputs));
            let (Some(x), Some(z_values)) = (x.as_slice(), z.as_slice_mut()) else { panic!("standard layout") };
            let block = packed.block(0..packed.outputs.div_ceil(PANEL));
            Product { x, block: &block, z: z_values }.with_simd(simd);
            z
        }
        let weight = matrix(37, 21, 5);
        let packed = PackedWeights::pack(weight.view());
        for rows in [1, 2, 3, 4, 5, 6, 7, 11] {
            let x = matrix(rows, 37, 6);
            let want = x.dot(&weight);
            for got in [with(pulp::Scalar128b, &x, &packed), with(pulp::Scalar::new(), &x, &packed)] {
                assert!(got.iter().zip(&want).all(|(g, w)| (g - w).abs() <= 1e-4 * (1.0 + w.abs())), "{rows} rows");
            }
        }
    }

    /// A product big enough to be split over threads gives the same answer, with blocks of
    /// unequal size (7 panels over 3 threads: 3, 3 and 1, the last one padded).
    #[test]
    fn a_product_split_over_threads_matches_ndarray() {
        let (inputs, outputs, rows) = (300, 100, 40);
        assert!(rows * inputs * outputs >= PARALLEL_MULTIPLY_ADDS, "big enough to be split");
        let weight = matrix(inputs, outputs, 7);
        let x = matrix(rows, inputs, 8);
        let want = x.dot(&weight);
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().expect("a pool");
        let got = pool.install(|| PackedWeights::pack(weight.view()).product(x.view())).expect("fits");
        assert_eq!(got.dim(), want.dim());
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() <= 1e-3 * (1.0 + w.abs()), "{g} vs {w}");
        }
    }

    #[test]
    fn only_layers_that_padding_does_not_bloat_are_worth_packing() {
        assert!(PackedWeights::worth_packing(2048, 2048));
        assert!(PackedWeights::worth_packing(256, 4), "a small head pads cheaply");
        assert!(PackedWeights::worth_packing(30, 1));
        assert!(PackedWeights::worth_packing(4096, 9), "9 of 16 columns used");
        assert!(!PackedWeights::worth_packing(65_536, 3), "a wide text model would grow 5x");
    }

    #[test]
    fn rows_split_into_the_fewest_even_tiles() {
        let sizes = |rows| tile_sizes(rows).collect::<Vec<_>>();
        assert_eq!(sizes(0), Vec::<usize>::new());
        assert_eq!(sizes(1), [1]);
        assert_eq!(sizes(6), [6]);
        assert_eq!(sizes(7), [4, 3]);
        assert_eq!(sizes(13), [5, 4, 4]);
        assert_eq!(sizes(64), [6, 6, 6, 6, 6, 6, 6, 6, 6, 5, 5]);
        for rows in 0..200 {
            let sizes = sizes(rows);
            assert_eq!(sizes.iter().sum::<usize>(), rows);
            assert!(sizes.iter().all(|&size| (1..=ROW_TILE).contains(&size)), "{rows}: {sizes:?}");
            assert!(sizes.iter().max().zip(sizes.iter().min()).is_none_or(|(max, min)| max - min <= 1));
        }
    }

    #[test]
    fn an_input_of_another_width_is_refused() {
        let packed = PackedWeights::pack(matrix(5, 3, 0).view());
        assert!(packed.product(matrix(2, 4, 0).view()).is_none());
    }
}
