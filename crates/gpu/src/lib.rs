//! The neural routing model's forward pass on an NVIDIA GPU (`cargo build --features gpu`):
//! [`GpuForward`], an [`Accelerator`](hive_neural::shared::Accelerator) for the scheduler's
//! predictor and the neural benchmark.
//!
//! Each layer is one cuBLAS `sgemm` (`y = x W^T`) and one NVRTC-compiled kernel that adds the
//! bias and applies the ReLU. The embeddings are gathered into the input rows on the CPU (a copy
//! per row, cheaper than a kernel launch); the rows go over, the two outputs per row come back.
//! The weights are copied to the device only when their version changes. Training stays on the
//! CPU: its batches are 64 rows, far below where the GPU starts to pay.
//!
//! Everything CUDA is opened at run time (cudarc's dynamic loading): the binary builds with no
//! CUDA SDK, and [`GpuForward::new`] answers an error, not a crash, on a machine without a GPU,
//! its driver, cuBLAS or NVRTC; the hub then logs one line and stays on the CPU.
//!
//! Without its `cuda` feature (which the `gpu` feature of `hive-cli`, `hive-server` and
//! `hive-bench` turns on) this crate is empty.

#[cfg(feature = "cuda")]
mod cuda;

#[cfg(feature = "cuda")]
pub use cuda::{GpuError, GpuForward};
