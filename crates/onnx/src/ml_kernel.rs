//! The one tract operator every `ai.onnx.ml` kernel of this crate runs as: a kernel says
//! what it answers and computes it from its inputs; [`KernelOp`] gives tract the
//! `Op` / `TypedOp` / `EvalOp` plumbing once, instead of once per operator.

use std::fmt::Debug;
use std::sync::Arc;

use tract_onnx::tract_hir::internal::*;

/// An operator's computation, free of tract's plumbing.
pub(crate) trait Kernel: Debug + Send + Sync + 'static {
    fn name(&self) -> &'static str;
    /// The outputs' types and shapes, from the inputs'.
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>>;
    /// The outputs, from the inputs.
    fn eval(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>>;
}

/// A [`Kernel`] as a tract operator.
#[derive(Debug)]
pub(crate) struct KernelOp<K: Kernel>(pub Arc<K>);

impl<K: Kernel> Clone for KernelOp<K> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

// tract wants operators comparable; two kernels are taken as equal only if shared.
impl<K: Kernel> PartialEq for KernelOp<K> {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}
impl<K: Kernel> Eq for KernelOp<K> {}

impl<K: Kernel> Op for KernelOp<K> {
    fn name(&self) -> StaticName {
        self.0.name().into()
    }

    op_as_typed_op!();
}

impl<K: Kernel> TypedOp for KernelOp<K> {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        self.0.output_facts(inputs)
    }

    as_op!();
}

impl<K: Kernel> EvalOp for KernelOp<K> {
    op_out_of_plan!();

    fn eval(&self, _: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        self.0.eval(inputs)
    }
}
