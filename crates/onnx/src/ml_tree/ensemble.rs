//! A tree ensemble as the `ai.onnx.ml` tree operators describe one, evaluated the way
//! onnxruntime does, so that answers match it to the last bit where they can: trees in
//! the order the graph lists them, each leaf's weights added to (or, for MIN and MAX,
//! compared with) its target in f32, a branch taken when its test holds or when the value
//! is missing (NaN) and the node says missing values go the true way.

use std::ops::Range;

/// A branch's test of `value` against its threshold (or, for `Member`, its set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Comparison {
    LessOrEqual,
    Less,
    GreaterOrEqual,
    Greater,
    Equal,
    NotEqual,
    /// The value is one of a set (opset 5's BRANCH_MEMBER, categorical splits).
    Member,
}

/// Where a branch leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Child {
    Branch(usize),
    Leaf(usize),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Branch {
    pub feature: usize,
    pub comparison: Comparison,
    pub threshold: f64,
    /// The set a `Member` branch tests, as a range of [`Ensemble::members`].
    pub members: Range<usize>,
    pub missing_goes_true: bool,
    pub if_true: Child,
    pub if_false: Child,
}

/// How the trees' leaf weights for one target combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Aggregate {
    Sum,
    Average,
    Min,
    Max,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Ensemble {
    /// Each tree's first node.
    pub roots: Vec<Child>,
    pub branches: Vec<Branch>,
    /// Each leaf's weights, as a range of `weights`.
    pub leaves: Vec<Range<usize>>,
    /// `(target, weight)` pairs.
    pub weights: Vec<(usize, f32)>,
    pub members: Vec<f64>,
    /// Outputs per row: regression targets or classes.
    pub targets: usize,
    pub aggregate: Aggregate,
}

/// One row's combined leaf weights, and which targets any leaf wrote to (onnxruntime
/// tells a target no tree scored from one scored zero).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Scores {
    pub values: Vec<f32>,
    pub scored: Vec<bool>,
}

impl Scores {
    pub fn new(targets: usize) -> Self {
        Self { values: vec![0.0; targets], scored: vec![false; targets] }
    }
}

impl Branch {
    fn holds(&self, value: f64, members: &[f64]) -> bool {
        let threshold = self.threshold;
        let test = match self.comparison {
            Comparison::LessOrEqual => value <= threshold,
            Comparison::Less => value < threshold,
            Comparison::GreaterOrEqual => value >= threshold,
            Comparison::Greater => value > threshold,
            Comparison::Equal => value == threshold,
            Comparison::NotEqual => value != threshold,
            Comparison::Member => members[self.members.clone()].contains(&value),
        };
        test || (self.missing_goes_true && value.is_nan())
    }
}

impl Ensemble {
    /// How many values a row must hold: one past the highest feature a branch reads.
    pub fn features(&self) -> usize {
        self.branches.iter().map(|branch| branch.feature + 1).max().unwrap_or(0)
    }

    /// Checks what evaluation relies on: every child, leaf weight and member range is in
    /// bounds, and every node belongs to one tree and is reached once (no loops), so
    /// [`Ensemble::score`] cannot index out of bounds or run forever.
    pub fn check(&self) -> Result<(), String> {
        if self.roots.is_empty() {
            return Err("the ensemble has no trees".into());
        }
        for range in &self.leaves {
            if range.end > self.weights.len() || range.start > range.end {
                return Err("a leaf's weights are out of range".into());
            }
        }
        if let Some((target, _)) = self.weights.iter().find(|(target, _)| *target >= self.targets) {
            return Err(format!("a leaf writes to target {target} but the ensemble has {} targets", self.targets));
        }
        let mut seen = vec![false; self.branches.len()];
        let mut pending: Vec<Child> = self.roots.clone();
        while let Some(child) = pending.pop() {
            match child {
                Child::Leaf(leaf) if leaf >= self.leaves.len() => return Err(format!("leaf {leaf} does not exist")),
                Child::Leaf(_) => {}
                Child::Branch(index) => {
                    let Some(branch) = self.branches.get(index) else {
                        return Err(format!("node {index} does not exist"));
                    };
                    if std::mem::replace(&mut seen[index], true) {
                        return Err("a node is reached twice: the trees loop or share nodes".into());
                    }
                    if branch.members.end > self.members.len() || branch.members.start > branch.members.end {
                        return Err("a branch's set of values is out of range".into());
                    }
                    pending.extend([branch.if_true, branch.if_false]);
                }
            }
        }
        Ok(())
    }

    fn leaf(&self, root: Child, row: &[f64]) -> usize {
        let mut at = root;
        loop {
            match at {
                Child::Leaf(leaf) => return leaf,
                Child::Branch(index) => {
                    let branch = &self.branches[index];
                    at =
                        if branch.holds(row[branch.feature], &self.members) { branch.if_true } else { branch.if_false };
                }
            }
        }
    }

    /// Combines the trees' leaves for one row (at least [`Ensemble::features`] values).
    /// Averages are divided by the number of trees later, as onnxruntime does.
    pub fn score(&self, row: &[f64], scores: &mut Scores) {
        scores.values.fill(0.0);
        scores.scored.fill(false);
        for &root in &self.roots {
            let leaf = self.leaf(root, row);
            for &(target, weight) in &self.weights[self.leaves[leaf].clone()] {
                let (value, scored) = (&mut scores.values[target], &mut scores.scored[target]);
                *value = match self.aggregate {
                    Aggregate::Sum | Aggregate::Average => *value + weight,
                    Aggregate::Min if *scored => value.min(weight),
                    Aggregate::Max if *scored => value.max(weight),
                    Aggregate::Min | Aggregate::Max => weight,
                };
                *scored = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tree 0: `x0 <= 1.5 ? leaf 0 (+1 to target 0) : leaf 1 (+3)`, NaN going true;
    /// tree 1: `x1 in {2, 4} ? leaf 2 (+10) : leaf 3 (+20 to target 1)`.
    fn two_trees(aggregate: Aggregate) -> Ensemble {
        let branch = |feature, comparison, threshold, members, if_true, if_false, missing_goes_true| Branch {
            feature,
            comparison,
            threshold,
            members,
            missing_goes_true,
            if_true: Child::Leaf(if_true),
            if_false: Child::Leaf(if_false),
        };
        Ensemble {
            roots: vec![Child::Branch(0), Child::Branch(1)],
            branches: vec![
                branch(0, Comparison::LessOrEqual, 1.5, 0..0, 0, 1, true),
                branch(1, Comparison::Member, 0.0, 0..2, 2, 3, false),
            ],
            leaves: vec![0..1, 1..2, 2..3, 3..4],
            weights: vec![(0, 1.0), (0, 3.0), (0, 10.0), (1, 20.0)],
            members: vec![2.0, 4.0],
            targets: 2,
            aggregate,
        }
    }

    fn score(ensemble: &Ensemble, row: &[f64]) -> Scores {
        let mut scores = Scores::new(ensemble.targets);
        ensemble.score(row, &mut scores);
        scores
    }

    #[test]
    fn rows_follow_their_branches_and_missing_values_go_where_the_node_says() {
        let sum = two_trees(Aggregate::Sum);
        sum.check().expect("well formed");
        assert_eq!(sum.features(), 2);
        assert_eq!(score(&sum, &[1.0, 4.0]), Scores { values: vec![11.0, 0.0], scored: vec![true, false] });
        assert_eq!(score(&sum, &[2.0, 3.0]), Scores { values: vec![3.0, 20.0], scored: vec![true, true] });
        // NaN goes true in tree 0, and is in no set in tree 1.
        assert_eq!(score(&sum, &[f64::NAN, f64::NAN]).values, [1.0, 20.0]);
        let min = two_trees(Aggregate::Min);
        assert_eq!(score(&min, &[1.0, 4.0]).values, [1.0, 0.0]);
        let max = two_trees(Aggregate::Max);
        assert_eq!(score(&max, &[1.0, 4.0]).values, [10.0, 0.0]);
    }

    #[test]
    fn malformed_trees_are_refused_before_they_run() {
        let mut looping = two_trees(Aggregate::Sum);
        looping.branches[1].if_true = Child::Branch(1);
        assert!(looping.check().expect_err("loops").contains("reached twice"));
        let mut dangling = two_trees(Aggregate::Sum);
        dangling.branches[0].if_false = Child::Leaf(9);
        assert!(dangling.check().expect_err("dangles").contains("leaf 9"));
        let mut wide = two_trees(Aggregate::Sum);
        wide.weights[3].0 = 2;
        assert!(wide.check().expect_err("too wide").contains("target 2"));
    }
}
