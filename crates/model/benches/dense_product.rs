//! `x · W` for served batch sizes: `ndarray::dot` (matrixmultiply, which packs W on
//! every call) against [`PackedWeights::product`] (W packed once at load), the latter
//! on one thread and split over rayon's threads (every core), alternating per shape so
//! both see the same phase of a noisy machine.
//!
//!     cargo bench -p modelplane-model --bench dense_product

use std::time::{Duration, Instant};

use modelplane_model::PackedWeights;
use ndarray::Array2;

fn time(mut run: impl FnMut() -> f32) -> Duration {
    let (mut reps, mut sink) = (0u32, 0.0);
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(300) || reps < 5 {
        sink += run();
        reps += 1;
    }
    std::hint::black_box(sink);
    started.elapsed() / reps
}

fn main() {
    let one_thread = rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("a one-thread pool");
    println!("| W | rows | dot ms | packed ms, one thread | packed ms, all cores | speed-up | packed GFLOP/s |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for width in [256usize, 1024, 2048] {
        let weight = Array2::from_shape_fn((width, width), |(i, j)| ((i * 7 + j * 3) % 13) as f32 * 0.01);
        let packed = PackedWeights::pack(weight.view());
        for rows in [1usize, 4, 13, 64] {
            let x = Array2::from_shape_fn((rows, width), |(i, j)| ((i + j) % 5) as f32 * 0.1);
            let dot = time(|| x.dot(&weight)[[0, 0]]);
            let product = || packed.product(x.view()).map_or(0.0, |z| z[[0, 0]]);
            let alone = one_thread.install(|| time(product));
            let fast = time(product);
            let gflops = 2.0 * (rows * width * width) as f64 / fast.as_secs_f64() / 1e9;
            println!(
                "| {width}x{width} | {rows} | {:.3} | {:.3} | {:.3} | {:.1}x | {gflops:.0} |",
                dot.as_secs_f64() * 1e3,
                alone.as_secs_f64() * 1e3,
                fast.as_secs_f64() * 1e3,
                dot.as_secs_f64() / fast.as_secs_f64()
            );
        }
    }
}
