//! The `promote_if` rule as a pure comparison: given the new version's metrics and those
//! of the version the alias points at (if it exists), move the alias or keep it, and say
//! why in words the job record and the audit log carry. The registry calls around it are
//! the runner's.

use std::collections::HashMap;

use modelplane_store::schema::PromoteRule;

/// What the rule decided.
#[derive(Debug, PartialEq)]
pub(crate) enum Verdict {
    /// Point the alias at the new version, for this reason.
    Promote(String),
    /// Leave the alias where it is; the whole outcome, for the job record.
    Keep(String),
}

/// The version an alias points at now: its number and metrics.
pub(crate) struct Current<'a> {
    pub version: u64,
    pub metrics: &'a HashMap<String, f64>,
}

/// Decides `rule` for version `version` with `metrics`, against `current` (None: the
/// alias does not exist yet, so the new version takes it).
pub(crate) fn decide(
    rule: &PromoteRule,
    version: u64,
    metrics: &HashMap<String, f64>,
    current: Option<Current<'_>>,
) -> Verdict {
    let Some(new_value) = metrics.get(&rule.metric).copied() else {
        let mut known: Vec<&String> = metrics.keys().collect();
        known.sort();
        return Verdict::Keep(format!("not promoted: v{version} has no metric {:?} (it has {known:?})", rule.metric));
    };
    let Some(current) = current else {
        return Verdict::Promote(format!("{} {new_value:.6}; {} did not exist", rule.metric, rule.alias));
    };
    let Some(old_value) = current.metrics.get(&rule.metric).copied() else {
        return Verdict::Keep(format!(
            "not promoted: {} v{} has no metric {:?} to compare",
            rule.alias, current.version, rule.metric
        ));
    };
    let better = if rule.lower_is_better { new_value < old_value } else { new_value > old_value };
    if !better {
        return Verdict::Keep(format!(
            "kept {} at v{}: {} {new_value:.6} does not beat {old_value:.6}",
            rule.alias, current.version, rule.metric
        ));
    }
    let sign = if rule.lower_is_better { "<" } else { ">" };
    Verdict::Promote(format!("{} {new_value:.6} {sign} {old_value:.6} of v{}", rule.metric, current.version))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(lower_is_better: bool) -> PromoteRule {
        PromoteRule { alias: "production".into(), metric: "rmse".into(), lower_is_better }
    }

    fn metrics(rmse: f64) -> HashMap<String, f64> {
        HashMap::from([("rmse".to_owned(), rmse)])
    }

    #[test]
    fn a_better_metric_promotes_in_the_rules_direction_and_a_tie_keeps() {
        let old = metrics(2.0);
        let current = || Some(Current { version: 1, metrics: &old });
        assert_eq!(
            decide(&rule(true), 2, &metrics(1.5), current()),
            Verdict::Promote("rmse 1.500000 < 2.000000 of v1".into())
        );
        assert_eq!(
            decide(&rule(true), 2, &metrics(2.0), current()),
            Verdict::Keep("kept production at v1: rmse 2.000000 does not beat 2.000000".into())
        );
        assert!(matches!(decide(&rule(false), 2, &metrics(1.5), current()), Verdict::Keep(_)));
        assert!(matches!(decide(&rule(false), 2, &metrics(2.5), current()), Verdict::Promote(_)));
    }

    #[test]
    fn a_missing_alias_promotes_and_a_missing_metric_keeps() {
        assert_eq!(
            decide(&rule(true), 1, &metrics(3.0), None),
            Verdict::Promote("rmse 3.000000; production did not exist".into())
        );
        let other = HashMap::from([("r2".to_owned(), 0.9)]);
        assert_eq!(
            decide(&rule(true), 1, &other, None),
            Verdict::Keep("not promoted: v1 has no metric \"rmse\" (it has [\"r2\"])".into())
        );
        let old = other.clone();
        assert_eq!(
            decide(&rule(true), 2, &metrics(1.0), Some(Current { version: 1, metrics: &old })),
            Verdict::Keep("not promoted: production v1 has no metric \"rmse\" to compare".into())
        );
    }
}
