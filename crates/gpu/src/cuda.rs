//! The CUDA side (see the crate's header).

use std::sync::Arc;

use cudarc::cublas::sys::cublasOperation_t;
use cudarc::cublas::{CudaBlas, Gemm, GemmConfig};
use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, LaunchConfig, PushKernelArg,
};
use hive_neural::Weights;
use hive_neural::mlp::{B1, B2, B3, H1, H2, INPUTS, OUTPUTS, W1, W2, W3};
use hive_neural::shared::Accelerator;

/// Adds the bias of each column to a row-major `rows x width` matrix, and applies the ReLU if
/// asked.
const KERNEL: &str = r#"
extern "C" __global__ void bias_activation(float* y, const float* bias, int width, int n, int relu) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        float v = y[i] + bias[i % width];
        y[i] = relu ? fmaxf(v, 0.0f) : v;
    }
}
"#;

/// Rows from which the GPU is used by default: below, a forward pass on the CPU takes less than
/// the copies and launches alone. An estimate until `hive bench --workloads neural` measures the
/// crossover on the machine at hand (BENCHMARKS.md); `HIVE_GPU_MIN_BATCH` overrides it.
pub const DEFAULT_MIN_BATCH: usize = 4_096;

#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error("no CUDA driver (libcuda) on this machine")]
    NoDriver,
    #[error("no {0} library on this machine")]
    NoLibrary(&'static str),
    #[error("CUDA: {0}")]
    Driver(#[from] cudarc::driver::DriverError),
    #[error("cuBLAS: {0:?}")]
    Blas(#[from] cudarc::cublas::result::CublasError),
    #[error("NVRTC could not compile the bias kernel: {0}")]
    Compile(String),
    #[error("{0} rows is more than one pass can take (an index would pass i32)")]
    TooLarge(usize),
    #[error("x holds {0} floats, not a whole number of rows")]
    Ragged(usize),
    #[error("CUDA panicked ({0}); the GPU is not used again")]
    Panicked(String),
}

/// Runs `f`, turning a panic inside cudarc (a symbol an old driver lacks, an unwrap in its
/// bindings) into an error: the hub must not go down with its GPU.
fn guarded<T>(f: impl FnOnce() -> Result<T, GpuError>) -> Result<T, GpuError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "no message".into());
        Err(GpuError::Panicked(what))
    })
}

/// The device's copy of the weights.
struct DeviceWeights {
    version: u64,
    w1: CudaSlice<f32>,
    b1: CudaSlice<f32>,
    w2: CudaSlice<f32>,
    b2: CudaSlice<f32>,
    w3: CudaSlice<f32>,
    b3: CudaSlice<f32>,
}

/// Activations on the device, grown to the largest batch seen.
struct Buffers {
    rows: usize,
    x: CudaSlice<f32>,
    h1: CudaSlice<f32>,
    h2: CudaSlice<f32>,
    y: CudaSlice<f32>,
}

pub struct GpuForward {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    blas: CudaBlas,
    bias_activation: CudaFunction,
    weights: Option<DeviceWeights>,
    buffers: Option<Buffers>,
    min_batch: usize,
    device: String,
    /// A pass panicked: the device's state is unknown, so every later pass is refused.
    broken: bool,
}

impl Drop for GpuForward {
    fn drop(&mut self) {
        // The fields are freed after this, on this thread: with the context current, so that
        // cuBLAS's handle and the buffers are released rather than failing (cudarc unwraps).
        let _ = guarded(|| Ok(self.ctx.bind_to_thread()?));
    }
}

impl GpuForward {
    /// The first GPU, or why there is none to use. (NVRTC must be no newer than the driver, or
    /// the kernel it compiles does not load: that is an error here too.)
    pub fn new() -> Result<GpuForward, GpuError> {
        guarded(GpuForward::open)
    }

    fn open() -> Result<GpuForward, GpuError> {
        // SAFETY: only tries to open the shared libraries; no CUDA call is made.
        #[allow(unsafe_code)]
        let (driver, blas, nvrtc) = unsafe {
            (
                cudarc::driver::sys::is_culib_present(),
                cudarc::cublas::sys::is_culib_present(),
                cudarc::nvrtc::sys::is_culib_present(),
            )
        };
        if !driver {
            return Err(GpuError::NoDriver);
        }
        if !blas {
            return Err(GpuError::NoLibrary("cuBLAS"));
        }
        if !nvrtc {
            return Err(GpuError::NoLibrary("NVRTC"));
        }
        let ctx = CudaContext::new(0)?;
        let stream = ctx.default_stream();
        let blas = CudaBlas::new(stream.clone())?;
        let ptx =
            cudarc::nvrtc::compile_ptx(KERNEL).map_err(|e| GpuError::Compile(e.to_string()))?;
        let module = ctx.load_module(ptx)?;
        let bias_activation = module.load_function("bias_activation")?;
        let device = ctx.name().unwrap_or_else(|_| "an NVIDIA GPU".into());
        let min_batch = std::env::var("HIVE_GPU_MIN_BATCH")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_MIN_BATCH);
        Ok(GpuForward {
            ctx,
            stream,
            blas,
            bias_activation,
            weights: None,
            buffers: None,
            min_batch,
            device,
            broken: false,
        })
    }

    /// The device's name, as its driver gives it.
    pub fn device(&self) -> &str {
        &self.device
    }

    /// Uses the GPU from `rows` rows on (the benchmark sets 1 to time every batch size).
    pub fn set_min_batch(&mut self, rows: usize) {
        self.min_batch = rows;
    }

    fn upload(&mut self, weights: &Weights, version: u64) -> Result<(), GpuError> {
        if self.weights.as_ref().is_some_and(|w| w.version == version) {
            return Ok(());
        }
        let p = &weights.params;
        let s = &self.stream;
        self.weights = Some(DeviceWeights {
            version,
            w1: s.clone_htod(&p[W1..B1])?,
            b1: s.clone_htod(&p[B1..W2])?,
            w2: s.clone_htod(&p[W2..B2])?,
            b2: s.clone_htod(&p[B2..W3])?,
            w3: s.clone_htod(&p[W3..B3])?,
            b3: s.clone_htod(&p[B3..])?,
        });
        Ok(())
    }

    fn buffers(&mut self, rows: usize) -> Result<(), GpuError> {
        if self.buffers.as_ref().is_some_and(|b| b.rows >= rows) {
            return Ok(());
        }
        let s = &self.stream;
        self.buffers = Some(Buffers {
            rows,
            x: s.alloc_zeros(rows * INPUTS)?,
            h1: s.alloc_zeros(rows * H1)?,
            h2: s.alloc_zeros(rows * H2)?,
            y: s.alloc_zeros(rows * OUTPUTS)?,
        });
        Ok(())
    }

    /// See [`Accelerator::forward`].
    pub fn run(
        &mut self,
        weights: &Weights,
        version: u64,
        x: &[f32],
        y: &mut Vec<f32>,
    ) -> Result<(), GpuError> {
        if self.broken {
            return Err(GpuError::Panicked("earlier".into()));
        }
        let result = guarded(|| self.pass(weights, version, x, y));
        if matches!(result, Err(GpuError::Panicked(_))) {
            self.broken = true;
        }
        result
    }

    fn pass(
        &mut self,
        weights: &Weights,
        version: u64,
        x: &[f32],
        y: &mut Vec<f32>,
    ) -> Result<(), GpuError> {
        if !x.len().is_multiple_of(INPUTS) {
            return Err(GpuError::Ragged(x.len()));
        }
        let rows = x.len() / INPUTS;
        y.clear();
        if rows == 0 {
            return Ok(());
        }
        if rows.saturating_mul(INPUTS.max(H1)) > i32::MAX as usize {
            return Err(GpuError::TooLarge(rows));
        }
        self.ctx.bind_to_thread()?;
        self.upload(weights, version)?;
        self.buffers(rows)?;
        let GpuForward {
            stream,
            blas,
            bias_activation: kernel,
            weights: Some(w),
            buffers: Some(b),
            ..
        } = self
        else {
            unreachable!("uploaded and allocated above");
        };
        stream.memcpy_htod(x, &mut b.x)?;
        let on = Device {
            blas,
            stream,
            kernel,
            rows,
        };
        on.layer(&b.x, INPUTS, &w.w1, &w.b1, H1, &mut b.h1, true)?;
        on.layer(&b.h1, H1, &w.w2, &w.b2, H2, &mut b.h2, true)?;
        on.layer(&b.h2, H2, &w.w3, &w.b3, OUTPUTS, &mut b.y, false)?;
        y.resize(rows * OUTPUTS, 0.0);
        stream.memcpy_dtoh(&b.y.slice(0..rows * OUTPUTS), y.as_mut_slice())?;
        stream.synchronize()?;
        Ok(())
    }
}

impl Accelerator for GpuForward {
    fn min_batch(&self) -> usize {
        self.min_batch
    }

    fn forward(
        &mut self,
        weights: &Weights,
        version: u64,
        x: &[f32],
        y: &mut Vec<f32>,
    ) -> Result<(), String> {
        self.run(weights, version, x, y).map_err(|e| e.to_string())
    }
}

/// What one batch's layers run on.
struct Device<'a> {
    blas: &'a CudaBlas,
    stream: &'a Arc<CudaStream>,
    kernel: &'a CudaFunction,
    rows: usize,
}

impl Device<'_> {
    /// `y = x W^T + b`, then the ReLU if asked, for `rows` rows: `x` is `rows x inputs` and `y`
    /// `rows x outputs`, row-major; `w` is `outputs x inputs`, row-major, as on the CPU.
    #[allow(clippy::too_many_arguments)]
    fn layer(
        &self,
        x: &CudaSlice<f32>,
        inputs: usize,
        w: &CudaSlice<f32>,
        bias: &CudaSlice<f32>,
        outputs: usize,
        y: &mut CudaSlice<f32>,
        relu: bool,
    ) -> Result<(), GpuError> {
        // cuBLAS is column-major: row-major y is column-major y^T (outputs x rows) = W x^T,
        // where row-major W reads as column-major W^T (transposed back: `T`) and row-major x
        // as column-major x^T (`N`).
        let cfg = GemmConfig {
            transa: cublasOperation_t::CUBLAS_OP_T,
            transb: cublasOperation_t::CUBLAS_OP_N,
            m: outputs as i32,
            n: self.rows as i32,
            k: inputs as i32,
            alpha: 1.0f32,
            lda: inputs as i32,
            ldb: inputs as i32,
            beta: 0.0f32,
            ldc: outputs as i32,
        };
        // SAFETY: `w` holds outputs x inputs floats (a layer's weights), `x` at least rows x
        // inputs and `y` at least rows x outputs (the buffers grow to the batch): all that the
        // product reads and writes.
        #[allow(unsafe_code)]
        unsafe { self.blas.gemm(cfg, w, x, y) }?;
        let n = (self.rows * outputs) as i32;
        let (width, relu) = (outputs as i32, i32::from(relu));
        let mut launch = self.stream.launch_builder(self.kernel);
        launch.arg(y);
        launch.arg(bias);
        launch.arg(&width);
        launch.arg(&n);
        launch.arg(&relu);
        // SAFETY: the arguments match the kernel's (float*, const float*, int, int, int) in
        // order; it touches y[0..n) and bias[0..width), both that long.
        #[allow(unsafe_code)]
        unsafe { launch.launch(LaunchConfig::for_num_elems(n as u32)) }?;
        Ok(())
    }
}
