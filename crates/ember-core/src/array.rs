//! `Array`: a cheap handle to a node of the lazy graph, and `ReadyArray`: computed data.
//!
//! A node is either pending (the op that will compute it and which of its outputs it is) or
//! ready (a buffer and a strided layout). Evaluation turns pending nodes ready and drops their
//! op, so intermediates nobody holds are freed. Dropping a long pending chain walks it with a
//! worklist, never recursion, so deep graphs cannot overflow the stack.

use crate::buffer::Buffer;
use crate::device::{default_stream, Stream};
use crate::dtype::{Dtype, Element};
use crate::op::Op;
use crate::{bail, Error, Result};
use ember_cpu::View;
use smallvec::SmallVec;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

/// An n-dimensional array: a node in the lazy graph. Cloning is cheap and shares the node.
#[derive(Clone)]
pub struct Array(pub(crate) Arc<Node>);

pub(crate) struct Node {
    pub(crate) shape: Vec<usize>,
    pub(crate) dtype: Dtype,
    pub(crate) stream: Stream,
    pub(crate) state: Mutex<State>,
}

pub(crate) enum State {
    Pending {
        op: Arc<OpNode>,
    },
    Ready(ReadyArray),
    /// The data was handed to the one op consuming it so its buffer can be reused in place;
    /// only that op's node could reach this array.
    Donated,
}

/// One recorded op application: the op, its inputs and (weakly) its output nodes.
pub(crate) struct OpNode {
    pub(crate) op: Op,
    pub(crate) inputs: Vec<Array>,
    /// Shape and dtype of every output, kept so that an op still runs when some outputs
    /// were dropped.
    pub(crate) specs: Vec<crate::op::OutSpec>,
    pub(crate) outputs: OnceLock<SmallVec<[Weak<Node>; 1]>>,
    /// Whether the op has run; held while it runs, so threads evaluating a shared graph run
    /// it once (its outputs may since have been donated, so their state cannot tell).
    pub(crate) done: Mutex<bool>,
}

/// Computed data: a shared buffer viewed with a shape, element strides and an element offset.
#[derive(Clone)]
pub struct ReadyArray {
    pub buffer: Arc<Buffer>,
    pub shape: Vec<usize>,
    pub strides: Vec<isize>,
    pub offset: usize,
    pub dtype: Dtype,
}

/// Row-major strides of a contiguous array of `shape`.
pub fn contiguous_strides(shape: &[usize]) -> Vec<isize> {
    let mut strides = vec![0isize; shape.len()];
    let mut acc = 1isize;
    for (s, &n) in strides.iter_mut().zip(shape).rev() {
        *s = acc;
        acc *= n.max(1) as isize;
    }
    strides
}

impl ReadyArray {
    /// A contiguous array over a whole buffer.
    pub fn contiguous(buffer: Buffer, shape: Vec<usize>, dtype: Dtype) -> ReadyArray {
        debug_assert!(buffer.len() >= shape.iter().product::<usize>() * dtype.size());
        let strides = contiguous_strides(&shape);
        ReadyArray { buffer: Arc::new(buffer), shape, strides, offset: 0, dtype }
    }

    pub fn size(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_contiguous(&self) -> bool {
        ember_cpu::strided::is_row_contiguous(&self.shape, &self.strides)
    }

    /// The same data seen with another layout (a zero-copy view).
    pub fn with_layout(&self, shape: Vec<usize>, strides: Vec<isize>, offset: usize) -> Self {
        ReadyArray { buffer: self.buffer.clone(), shape, strides, offset, dtype: self.dtype }
    }

    /// All elements of the buffer as `T`. Panics if `T` is not this array's element type.
    pub fn elements<T: Element>(&self) -> &[T] {
        assert_eq!(T::DTYPE, self.dtype, "element type does not match dtype");
        typed(&self.buffer)
    }

    /// The array's own elements, in order, when it is contiguous (see [`Self::is_contiguous`]).
    pub fn contiguous_elements<T: Element>(&self) -> &[T] {
        debug_assert!(self.is_contiguous(), "contiguous_elements of a strided view");
        &self.elements::<T>()[self.offset..][..self.size()]
    }

    /// The elements as a mutable contiguous slice, when this array is the only user of a
    /// buffer laid out exactly as `shape` of `dtype` (so an op may overwrite it in place).
    pub fn donatable<T: Element>(&mut self, shape: &[usize]) -> Option<&mut [T]> {
        if T::DTYPE != self.dtype || self.shape != shape || !self.is_contiguous() {
            return None;
        }
        let (offset, n) = (self.offset, self.size());
        let buffer = Arc::get_mut(&mut self.buffer)?;
        if buffer.is_external() {
            return None;
        }
        Some(&mut typed_mut::<T>(buffer)[offset..offset + n])
    }

    /// A typed strided view for the kernels.
    pub fn view<T: Element>(&self) -> View<'_, T> {
        View::new(self.elements::<T>(), &self.shape, &self.strides, self.offset)
    }
}

/// Reinterprets a buffer's bytes as elements of `T`.
pub(crate) fn typed<T: Element>(buffer: &Buffer) -> &[T] {
    let size = std::mem::size_of::<T>();
    assert_eq!(buffer.as_ptr() as usize % std::mem::align_of::<T>(), 0, "misaligned buffer");
    // SAFETY: the pointer is aligned for T (checked above), the buffer holds len initialised
    // bytes, every Element is plain data for which any byte pattern is valid except bool,
    // and bool buffers are only written with 0/1 (kernels, `alloc_output`, and loaders that
    // validate). The slice borrows the buffer, so it cannot outlive it.
    unsafe { std::slice::from_raw_parts(buffer.as_ptr() as *const T, buffer.len() / size) }
}

/// Reinterprets a uniquely held buffer's bytes as mutable elements of `T`.
pub(crate) fn typed_mut<T: Element>(buffer: &mut Buffer) -> &mut [T] {
    let size = std::mem::size_of::<T>();
    let bytes = buffer.bytes_mut();
    assert_eq!(bytes.as_ptr() as usize % std::mem::align_of::<T>(), 0, "misaligned buffer");
    // SAFETY: as in `typed`; `&mut Buffer` makes the access exclusive.
    unsafe { std::slice::from_raw_parts_mut(bytes.as_mut_ptr() as *mut T, bytes.len() / size) }
}

/// A fresh buffer for `n` elements of `dtype`. Bool buffers are zeroed so that a recycled
/// buffer never shows a bool other than 0 or 1.
pub fn alloc_output(dtype: Dtype, n: usize) -> Result<Buffer> {
    let bytes = n * dtype.size();
    if dtype == Dtype::Bool {
        Buffer::zeroed(bytes)
    } else {
        Buffer::alloc(bytes)
    }
}

/// Allocates a contiguous output and lets `fill` write its elements.
pub fn new_output<T: Element>(
    shape: &[usize],
    fill: impl FnOnce(&mut [T]) -> Result<()>,
) -> Result<ReadyArray> {
    let n = shape.iter().product();
    let mut buffer = alloc_output(T::DTYPE, n)?;
    fill(&mut typed_mut::<T>(&mut buffer)[..n])?;
    Ok(ReadyArray::contiguous(buffer, shape.to_vec(), T::DTYPE))
}

impl Node {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Array {
    /// Records `op` applied to `inputs`; returns its single output. Shape and dtype errors
    /// surface here, before anything is computed.
    pub fn from_op(op: Op, inputs: Vec<Array>) -> Result<Array> {
        let mut outs = Array::record(op, inputs)?;
        if outs.len() != 1 {
            bail!("graph", "op produced {} outputs where one was expected", outs.len());
        }
        Ok(outs.remove(0))
    }

    /// Records an op with several outputs (they are siblings sharing one `OpNode`).
    pub fn from_op_multi(op: Op, inputs: Vec<Array>) -> Result<Vec<Array>> {
        Ok(Array::record(op, inputs)?.into_vec())
    }

    /// Records `op` and returns its outputs, kept inline: a decoding step records a thousand
    /// single-output ops, and each heap block is one more allocation and free per op.
    fn record(op: Op, inputs: Vec<Array>) -> Result<SmallVec<[Array; 1]>> {
        let specs = {
            let refs: SmallVec<[&Array; 4]> = inputs.iter().collect();
            op.infer(&refs)?
        };
        let stream = default_stream();
        let op_node = Arc::new(OpNode {
            op,
            inputs,
            specs,
            outputs: OnceLock::new(),
            done: Mutex::new(false),
        });
        let outs: SmallVec<[Array; 1]> = op_node
            .specs
            .iter()
            .map(|(shape, dtype)| {
                Array(Arc::new(Node {
                    shape: shape.clone(),
                    dtype: *dtype,
                    stream,
                    state: Mutex::new(State::Pending { op: op_node.clone() }),
                }))
            })
            .collect();
        let weak = outs.iter().map(|a| Arc::downgrade(&a.0)).collect();
        op_node.outputs.set(weak).map_err(|_| Error::op("graph", "outputs set twice"))?;
        crate::transforms::tape::record(&op_node);
        Ok(outs)
    }

    /// Wraps computed data.
    pub fn from_ready(data: ReadyArray) -> Array {
        Array(Arc::new(Node {
            shape: data.shape.clone(),
            dtype: data.dtype,
            stream: default_stream(),
            state: Mutex::new(State::Ready(data)),
        }))
    }

    /// An array holding a copy of `data` with the given shape.
    pub fn from_slice<T: Element>(data: &[T], shape: &[usize]) -> Result<Array> {
        let n: usize = shape.iter().product();
        if n != data.len() {
            bail!("array", "{} elements cannot have shape {:?}", data.len(), shape);
        }
        Ok(Array::from_ready(new_output::<T>(shape, |out| {
            out.copy_from_slice(data);
            Ok(())
        })?))
    }

    /// An array from a Vec with the given shape.
    pub fn from_vec<T: Element>(data: Vec<T>, shape: &[usize]) -> Result<Array> {
        Array::from_slice(&data, shape)
    }

    /// A 0-d array.
    pub fn scalar<T: Element>(value: T) -> Array {
        Array::from_slice(&[value], &[]).expect("one element fits shape []")
    }

    pub fn shape(&self) -> &[usize] {
        &self.0.shape
    }

    pub fn dtype(&self) -> Dtype {
        self.0.dtype
    }

    pub fn ndim(&self) -> usize {
        self.0.shape.len()
    }

    /// Number of elements.
    pub fn size(&self) -> usize {
        self.0.shape.iter().product()
    }

    pub fn nbytes(&self) -> usize {
        self.size() * self.dtype().size()
    }

    pub fn itemsize(&self) -> usize {
        self.dtype().size()
    }

    /// The stream the op producing this array runs on.
    pub fn stream(&self) -> Stream {
        self.0.stream
    }

    /// True once the array has been computed.
    pub fn is_evaluated(&self) -> bool {
        matches!(*self.0.lock(), State::Ready(_))
    }

    /// True when both handles are the same node.
    pub fn same_node(&self, other: &Array) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// Computes this array (and what it depends on).
    pub fn eval(&self) -> Result<()> {
        crate::eval::eval(&[self])
    }

    /// The computed data, evaluating first if needed.
    pub fn ready(&self) -> Result<ReadyArray> {
        self.eval()?;
        match &*self.0.lock() {
            State::Ready(d) => Ok(d.clone()),
            _ => bail!("eval", "array not computed after eval"),
        }
    }

    /// The elements in row-major order, converted to `T`.
    pub fn to_vec<T: Element>(&self) -> Result<Vec<T>> {
        let mut out = Vec::new();
        self.read_into(&mut out)?;
        Ok(out)
    }

    /// As [`Array::to_vec`], but written over `out`, whose allocation is reused: a loop that
    /// reads an array every step (a decoder's logits) allocates nothing.
    pub fn read_into<T: Element>(&self, out: &mut Vec<T>) -> Result<()> {
        let arr = if self.dtype() == T::DTYPE { self.clone() } else { self.astype(T::DTYPE)? };
        let data = arr.ready()?;
        out.clear();
        out.resize(data.size(), T::default());
        ember_cpu::strided::map1(out, data.view::<T>(), |x| x);
        Ok(())
    }

    /// The value of a one-element array, converted to `T`.
    pub fn item<T: Element>(&self) -> Result<T> {
        if self.size() != 1 {
            bail!(
                "item",
                "array of shape {:?} has {} elements, not one",
                self.shape(),
                self.size()
            );
        }
        Ok(self.to_vec::<T>()?[0])
    }

    /// A copy converted to `dtype`.
    pub fn astype(&self, dtype: Dtype) -> Result<Array> {
        crate::ops::astype(self, dtype)
    }

    /// The pending op and its inputs, if not computed yet.
    pub(crate) fn pending(&self) -> Option<Arc<OpNode>> {
        match &*self.0.lock() {
            State::Pending { op, .. } => Some(op.clone()),
            _ => None,
        }
    }
}

impl Drop for OpNode {
    /// Releases a chain of pending ancestors iteratively.
    fn drop(&mut self) {
        let mut stack: Vec<Array> = std::mem::take(&mut self.inputs);
        while let Some(arr) = stack.pop() {
            let Some(node) = Arc::into_inner(arr.0) else { continue };
            if let State::Pending { op, .. } =
                node.state.into_inner().unwrap_or_else(|e| e.into_inner())
            {
                if let Some(mut op_node) = Arc::into_inner(op) {
                    stack.append(&mut op_node.inputs);
                }
            }
        }
    }
}

impl std::fmt::Debug for Array {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}
