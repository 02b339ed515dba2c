//! Devices and streams. Arrays never belong to a device: each op records the stream it runs
//! on, taken from the thread's default unless the caller scopes another with `with_stream`.

use std::cell::Cell;
use std::fmt;

/// Where an op runs. Memory is unified: any device reads any array.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Device {
    Cpu,
    Gpu(usize),
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => write!(f, "cpu"),
            Device::Gpu(i) => write!(f, "gpu({i})"),
        }
    }
}

/// An ordered queue of work on one device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Stream {
    pub device: Device,
    pub index: usize,
}

impl Stream {
    pub const fn default_for(device: Device) -> Stream {
        Stream { device, index: 0 }
    }
}

thread_local! {
    static DEFAULT_STREAM: Cell<Stream> = const { Cell::new(Stream::default_for(Device::Cpu)) };
}

/// The stream new ops are recorded on in this thread.
pub fn default_stream() -> Stream {
    DEFAULT_STREAM.with(|s| s.get())
}

pub fn default_device() -> Device {
    default_stream().device
}

/// Makes `device` the default for this thread (its default stream).
pub fn set_default_device(device: Device) {
    DEFAULT_STREAM.with(|s| s.set(Stream::default_for(device)));
}

/// Runs `f` with `stream` as the default, like MLX's `with mx.stream(s):` (or `stream=`).
pub fn with_stream<R>(stream: Stream, f: impl FnOnce() -> R) -> R {
    let old = DEFAULT_STREAM.with(|s| s.replace(stream));
    struct Restore(Stream);
    impl Drop for Restore {
        fn drop(&mut self) {
            DEFAULT_STREAM.with(|s| s.set(self.0));
        }
    }
    let _restore = Restore(old);
    f()
}

/// Runs `f` with `device`'s default stream as the default.
pub fn with_device<R>(device: Device, f: impl FnOnce() -> R) -> R {
    with_stream(Stream::default_for(device), f)
}
