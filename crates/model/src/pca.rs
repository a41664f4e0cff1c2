//! PCA on standardised features: eigenvectors of the covariance matrix (cyclic Jacobi,
//! in f64), keeping a number of components or enough to explain a share of the variance.

use ndarray::linalg::general_mat_mul;
use ndarray::{Array1, Array2, ArrayView2, Axis, Zip};

/// Rows widened to f64 at a time while the covariance is summed.
const BLOCK_ROWS: usize = 4096;

/// How many components to keep.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Components {
    /// Exactly this many (at most the feature count).
    Count(usize),
    /// The fewest whose explained variance ratio reaches this share, in (0, 1).
    Variance(f64),
}

/// Symmetric eigen decomposition: eigenvalues descending and eigenvectors as columns.
fn eigen_symmetric(mut a: Array2<f64>) -> (Vec<f64>, Array2<f64>) {
    let d = a.nrows();
    let mut v = Array2::<f64>::eye(d);
    for _sweep in 0..100 {
        let off: f64 = (0..d)
            .flat_map(|p| (0..d).filter(move |q| *q != p).map(move |q| (p, q)))
            .map(|(p, q)| a[[p, q]].powi(2))
            .sum();
        let total: f64 = a.iter().map(|x| x * x).sum();
        if off <= 1e-22 * total.max(1e-300) {
            break;
        }
        for p in 0..d {
            for q in p + 1..d {
                let apq = a[[p, q]];
                if apq.abs() < 1e-300 {
                    continue;
                }
                let theta = (a[[q, q]] - a[[p, p]]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..d {
                    let (akp, akq) = (a[[k, p]], a[[k, q]]);
                    a[[k, p]] = c * akp - s * akq;
                    a[[k, q]] = s * akp + c * akq;
                }
                for k in 0..d {
                    let (apk, aqk) = (a[[p, k]], a[[q, k]]);
                    a[[p, k]] = c * apk - s * aqk;
                    a[[q, k]] = s * apk + c * aqk;
                }
                for k in 0..d {
                    let (vkp, vkq) = (v[[k, p]], v[[k, q]]);
                    v[[k, p]] = c * vkp - s * vkq;
                    v[[k, q]] = s * vkp + c * vkq;
                }
            }
        }
    }
    let mut order: Vec<usize> = (0..d).collect();
    order.sort_by(|x, y| a[[*y, *y]].total_cmp(&a[[*x, *x]]));
    let values = order.iter().map(|i| a[[*i, *i]].max(0.0)).collect();
    let vectors = v.select(Axis(1), &order);
    (values, vectors)
}

/// Fits PCA on standardised rows; returns the projection `[features, components]`.
pub fn fit(x: ArrayView2<'_, f32>, keep: Components) -> Array2<f32> {
    let n = (x.nrows().max(2) - 1) as f64;
    let mut mean = Array1::<f64>::zeros(x.ncols());
    for row in x.rows() {
        Zip::from(&mut mean).and(&row).for_each(|m, v| *m += f64::from(*v));
    }
    mean /= x.nrows().max(1) as f64;
    // The covariance is summed a block of rows at a time, so only one block is ever held
    // in f64 (not a widened, centred copy of the whole table).
    let mut covariance = Array2::<f64>::zeros((x.ncols(), x.ncols()));
    for block in x.axis_chunks_iter(Axis(0), BLOCK_ROWS) {
        let centred = block.mapv(f64::from) - mean.view().insert_axis(Axis(0));
        general_mat_mul(1.0, &centred.t(), &centred, 1.0, &mut covariance);
    }
    covariance /= n;
    let (values, mut vectors) = eigen_symmetric(covariance);
    let total: f64 = values.iter().sum::<f64>().max(1e-300);
    let count = match keep {
        Components::Count(k) => k.clamp(1, values.len()),
        Components::Variance(share) => {
            let mut cumulative = 0.0;
            values
                .iter()
                .position(|v| {
                    cumulative += v / total;
                    cumulative >= share - 1e-12
                })
                .map_or(values.len(), |i| i + 1)
        }
    };
    // A stable sign: the largest entry of each component is positive.
    for mut column in vectors.columns_mut() {
        let largest = column.iter().copied().fold(0.0f64, |m, v| if v.abs() > m.abs() { v } else { m });
        if largest < 0.0 {
            column.mapv_inplace(|v| -v);
        }
    }
    let kept: Vec<usize> = (0..count).collect();
    vectors.select(Axis(1), &kept).mapv(|v| v as f32)
}

#[cfg(test)]
mod tests {
    use ndarray::Array2;

    use super::*;

    #[test]
    fn finds_the_direction_of_most_variance() {
        // Points along (1, 1) with a little spread along (1, -1).
        let x = Array2::from_shape_fn((200, 2), |(i, j)| {
            let t = i as f32 / 10.0 - 10.0;
            let wobble = if i % 2 == 0 { 0.3 } else { -0.3 };
            if j == 0 { t + wobble } else { t - wobble }
        });
        let components = fit(x.view(), Components::Count(1));
        assert_eq!(components.dim(), (2, 1));
        let expected = std::f32::consts::FRAC_1_SQRT_2;
        assert!(
            (components[[0, 0]] - expected).abs() < 1e-3 && (components[[1, 0]] - expected).abs() < 1e-3,
            "{components}"
        );
        assert_eq!(fit(x.view(), Components::Variance(0.99)).ncols(), 1);
        assert_eq!(fit(x.view(), Components::Variance(0.99999)).ncols(), 2);
    }

    #[test]
    fn eigenvectors_satisfy_the_definition() {
        let a = ndarray::array![[4.0, 1.0, 0.5], [1.0, 3.0, 0.2], [0.5, 0.2, 1.0]];
        let (values, vectors) = eigen_symmetric(a.clone());
        for (i, value) in values.iter().enumerate() {
            let v = vectors.column(i);
            let av = a.dot(&v);
            for k in 0..3 {
                assert!((av[k] - value * v[k]).abs() < 1e-9);
            }
        }
        assert!(values[0] >= values[1] && values[1] >= values[2]);
    }
}
