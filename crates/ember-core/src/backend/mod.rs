//! The backend seam: each device has a `Backend` that evaluates ops. Only the CPU backend
//! exists now; a GPU backend registers for `Device::Gpu`.

pub mod cpu;

use crate::array::ReadyArray;
use crate::device::Device;
use crate::dtype::Dtype;
use crate::op::{Op, OutSpec};
use crate::{Error, Result};

/// Evaluates ops on one device.
pub trait Backend: Send + Sync {
    fn device(&self) -> Device;
    /// Whether this backend has a kernel for `op` on inputs of `dtypes`.
    fn supports(&self, op: &Op, dtypes: &[Dtype]) -> bool;
    /// Computes `op`'s outputs (shapes and dtypes in `outputs`) from ready `inputs`. An
    /// output may share an input's buffer (a view), or overwrite an input that
    /// `ReadyArray::donatable` offers (no one else holds it).
    fn eval(
        &self,
        op: &Op,
        inputs: &mut [ReadyArray],
        outputs: &[OutSpec],
    ) -> Result<Vec<ReadyArray>>;
}

static CPU: cpu::CpuBackend = cpu::CpuBackend;

/// The backend that runs ops for `device`.
pub fn backend_for(device: Device) -> Result<&'static dyn Backend> {
    match device {
        Device::Cpu => Ok(&CPU),
        Device::Gpu(_) => Err(Error::op("eval", format!("no backend for {device} in this build"))),
    }
}
