//! Matrix products on the CPU: batch dims broadcast by strides, each matrix through `Gemm`.

use crate::array::{new_output, ReadyArray};
use crate::op::OutSpec;
use crate::ops::linalg::LinalgOp;
use crate::{dispatch, Result};
use ember_cpu::matmul::{Gemm, MatRef};
use ember_cpu::strided::Rows;

pub fn eval(op: &LinalgOp, inputs: &[ReadyArray], outputs: &[OutSpec]) -> Result<Vec<ReadyArray>> {
    match op {
        LinalgOp::Matmul => Ok(vec![matmul(&inputs[0], &inputs[1], &outputs[0].0)?]),
    }
}

fn matmul(a: &ReadyArray, b: &ReadyArray, shape: &[usize]) -> Result<ReadyArray> {
    let nd = shape.len();
    let (m, n) = (shape[nd - 2], shape[nd - 1]);
    let k = a.shape[a.shape.len() - 1];
    let batch = &shape[..nd - 2];
    // Batch strides of each operand broadcast to the output's batch shape.
    let batch_strides = |x: &ReadyArray| -> Vec<isize> {
        let xb = &x.shape[..x.shape.len() - 2];
        let lead = batch.len() - xb.len();
        (0..batch.len())
            .map(|i| if i < lead || xb[i - lead] == 1 { 0 } else { x.strides[i - lead] })
            .collect()
    };
    let (sa, sb) = (batch_strides(a), batch_strides(b));
    let rows = Rows::new(batch, [&sa, &sb], [a.offset, b.offset]);
    let count: usize = batch.iter().product();
    let mat = |x: &ReadyArray| (x.strides[x.shape.len() - 2], x.strides[x.shape.len() - 1]);
    let ((ars, acs), (brs, bcs)) = (mat(a), mat(b));
    dispatch!(a.dtype, T => new_output::<T>(shape, |out| {
        let (da, db) = (a.elements::<T>(), b.elements::<T>());
        for bi in 0..count {
            // Rows iterates batch dims; its inner dim is the last batch axis.
            let inner = rows.inner_len.max(1);
            let [oa, ob] = rows.offsets(bi / inner);
            let [ia, ib] = rows.inner_strides;
            let j = (bi % inner) as isize;
            let ma = MatRef { data: da, offset: (oa + j * ia) as usize, row_stride: ars, col_stride: acs };
            let mb = MatRef { data: db, offset: (ob + j * ib) as usize, row_stride: brs, col_stride: bcs };
            T::matmul(&mut out[bi * m * n..(bi + 1) * m * n], ma, mb, m, n, k);
        }
        Ok(())
    }))
}
