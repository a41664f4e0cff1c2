//! `ai.onnx.ml` Scaler, which tract lacks and scikit-learn's `StandardScaler` exports to
//! (skl2onnx): `Y = (X - offset) * scale`, per feature (the last axis) or with one
//! value for all, answered as FP32 whatever the input's numeric type.

use tract_onnx::model::{OnnxOpRegister, ParsingContext};
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_core::ops::math::{mul, sub};
use tract_onnx::tract_hir::internal::*;
use tract_onnx::tract_hir::ops::logic::wire_with_rank_broadcast;

/// Adds Scaler to the operators tract parses.
pub fn register(register: &mut OnnxOpRegister) {
    register.insert("Scaler", scaler);
}

#[derive(Debug, Clone, PartialEq)]
struct Scaler {
    offset: Vec<f32>,
    scale: Vec<f32>,
}

fn scaler(_: &ParsingContext, node: &NodeProto) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let offset: Vec<f32> = node.get_attr_opt_vec("offset")?.unwrap_or_default();
    let scale: Vec<f32> = node.get_attr_opt_vec("scale")?.unwrap_or_default();
    Ok((expand(Scaler { offset, scale }), vec![]))
}

impl Expansion for Scaler {
    fn name(&self) -> StaticName {
        "Scaler".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        solver: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 1)?;
        check_output_arity(outputs, 1)?;
        solver.equals(&outputs[0].datum_type, DatumType::F32)?;
        solver.equals(&inputs[0].shape, &outputs[0].shape)?;
        Ok(())
    }

    fn wire(&self, prefix: &str, model: &mut TypedModel, inputs: &[OutletId]) -> TractResult<TVec<OutletId>> {
        let fact = model.outlet_fact(inputs[0])?.clone();
        ensure!(fact.rank() >= 1, "Scaler takes a tensor of rank 1 or more, not a scalar");
        let features = fact.shape.last().and_then(|dim| dim.to_usize().ok());
        // One value applies to every feature; else one per feature of the last axis.
        let per_feature = |name: &str, values: &[f32], neutral: f32| -> TractResult<Tensor> {
            match (values.len(), features) {
                (0, _) => Ok(tensor1(&[neutral])),
                (1, _) => Ok(tensor1(values)),
                (n, Some(width)) if n == width => Ok(tensor1(values)),
                (n, width) => bail!(
                    "Scaler's {name} has {n} values but its input has {} features; \
                     expected one value or one per feature",
                    width.map_or("an unknown number of".to_owned(), |w| w.to_string())
                ),
            }
        };
        let offset = per_feature("offset", &self.offset, 0.0)?;
        let scale = per_feature("scale", &self.scale, 1.0)?;
        let mut x = inputs[0];
        if fact.datum_type != f32::datum_type() {
            x = model.wire_node(
                format!("{prefix}.to_f32"),
                tract_onnx::tract_core::ops::cast::cast(f32::datum_type()),
                &[x],
            )?[0];
        }
        let offset = model.add_const(format!("{prefix}.offset"), offset)?;
        let scale = model.add_const(format!("{prefix}.scale"), scale)?;
        let centred = wire_with_rank_broadcast(format!("{prefix}.sub"), model, sub(), &[x, offset])?[0];
        wire_with_rank_broadcast(format!("{prefix}.mul"), model, mul(), &[centred, scale])
    }

    fn nboutputs(&self) -> TractResult<usize> {
        Ok(1)
    }
}
