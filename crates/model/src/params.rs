//! Hyperparameters: defaults per model kind, parsed from string pairs with every value
//! range-checked, so a bad job is refused at submission with the field and its range.

use std::collections::BTreeMap;

use crate::network::Activation;
use crate::pca::Components;
use crate::{Error, ModelKind, Result};

/// How weights move along the gradient.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Optimizer {
    /// Stochastic gradient descent with optional momentum.
    Sgd,
    /// Adam (β1 0.9, β2 0.999, ε 1e-8).
    Adam,
}

/// Learning rate over the epochs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Schedule {
    /// The same rate throughout.
    Constant,
    /// Cosine decay from the rate to 0 over the epochs.
    Cosine,
}

/// Hyperparameters; see [`TrainParams::defaults_for`].
#[derive(Clone, Debug, PartialEq)]
pub struct TrainParams {
    /// Step size, in (0, 10].
    pub learning_rate: f32,
    /// Passes over the training split, in [1, 100000].
    pub epochs: u32,
    /// Rows per gradient step, in [1, 1000000].
    pub batch_size: usize,
    /// L2 penalty: `l2 · w` is added to each weight's gradient, in [0, 100].
    pub l2: f32,
    /// Seed for the split, the initial weights and the shuffles.
    pub seed: u64,
    /// Fraction of rows held out for metrics and early stopping, in [0, 0.9].
    pub validation_fraction: f64,
    /// Hidden layer sizes (MLP only), each in [1, 65536].
    pub hidden: Vec<usize>,
    /// Hidden activation (MLP only).
    pub activation: Activation,
    /// Optimizer.
    pub optimizer: Optimizer,
    /// SGD momentum, in [0, 1).
    pub momentum: f32,
    /// Stop when the validation loss has not improved for `patience` epochs.
    pub early_stopping: bool,
    /// Epochs without improvement before stopping, in [1, 10000].
    pub patience: u32,
    /// Learning-rate schedule.
    pub schedule: Schedule,
    /// Column of free text to vectorise; it is then the model's only input.
    pub text_column: Option<String>,
    /// Hashed text columns, in [16, 65536].
    pub n_features: usize,
    /// Longest word n-gram, in [1, 3].
    pub ngram_max: usize,
    /// Weight hashed counts by inverse document frequency.
    pub tfidf: bool,
    /// PCA after the scaler: a component count, or a variance share in (0, 1).
    pub pca: Option<Components>,
    /// Trees to grow (tree kinds; boosting rounds for gbdt), in [1, 100000].
    pub n_trees: usize,
    /// Deepest a tree may grow (tree kinds; `usize::MAX`: no limit), in [1, 1024].
    pub max_depth: usize,
    /// Most leaves a tree may have (tree kinds; `usize::MAX`: no limit), in [2, 1048576].
    pub max_leaves: usize,
    /// Fewest training rows a leaf may hold (tree kinds), in [1, 1000000].
    pub min_rows_per_leaf: usize,
    /// Bins per feature for split finding (tree kinds), in [2, 255].
    pub max_bins: usize,
    /// Share of the features each split considers (tree kinds), in (0, 1]; by default
    /// √features for random forest classifiers, all otherwise.
    pub feature_fraction: Option<f64>,
    /// Columns read as categories even when every value is a number (codes, ids); a
    /// column with any text that is not a number is categorical without being named.
    pub categorical: Vec<String>,
    /// Most categories a categorical column keeps (the most frequent in the training
    /// rows; rarer ones are treated as unseen), in [1, 65536].
    pub max_categories: usize,
}

const NAMES: &str = "learning_rate, epochs, batch_size, l2, seed, validation_fraction, hidden, activation, \
                     optimizer, momentum, early_stopping, patience, lr_schedule, text_column, n_features, \
                     ngram_max, tfidf, pca, n_trees, max_depth, max_leaves, min_rows_per_leaf, max_bins, \
                     feature_fraction, categorical, max_categories";

/// Parameters only the dense kinds (linear, logistic, softmax, MLP) take.
const DENSE_ONLY: [&str; 10] = [
    "epochs",
    "batch_size",
    "optimizer",
    "momentum",
    "lr_schedule",
    "text_column",
    "n_features",
    "ngram_max",
    "tfidf",
    "pca",
];
/// Parameters only the tree kinds take.
const TREE_ONLY: [&str; 10] = [
    "n_trees",
    "n_estimators",
    "max_depth",
    "max_leaves",
    "num_leaves",
    "min_rows_per_leaf",
    "min_samples_leaf",
    "max_bins",
    "feature_fraction",
    "max_features",
];

fn invalid(name: &str, reason: impl Into<String>) -> Error {
    Error::InvalidParam { name: name.into(), reason: reason.into() }
}

fn parse<T: std::str::FromStr>(name: &str, value: &str, expected: &str) -> Result<T> {
    value.trim().parse().map_err(|_| invalid(name, format!("{value:?} is not {expected}")))
}

fn check_range(name: &str, value: f64, low: f64, high: f64, low_inclusive: bool, high_inclusive: bool) -> Result<()> {
    let above = if low_inclusive { value >= low } else { value > low };
    let below = if high_inclusive { value <= high } else { value < high };
    if above && below {
        return Ok(());
    }
    let (open, close) = (if low_inclusive { "[" } else { "(" }, if high_inclusive { "]" } else { ")" });
    Err(invalid(name, format!("{value} is out of range; allowed {open}{low}, {high}{close}")))
}

impl TrainParams {
    /// Defaults: SGD, rate 0.1, 100 epochs, batches of 32 for the linear kinds; for the
    /// MLP the defaults of scikit-learn's MLPClassifier (Adam, rate 0.001, 200 epochs,
    /// batches of 200, one hidden layer) with 64 hidden units.
    pub fn defaults_for(kind: ModelKind) -> Self {
        let linear = Self {
            learning_rate: 0.1,
            epochs: 100,
            batch_size: 32,
            l2: 0.0,
            seed: 42,
            validation_fraction: 0.2,
            hidden: Vec::new(),
            activation: Activation::Relu,
            optimizer: Optimizer::Sgd,
            momentum: 0.0,
            early_stopping: false,
            patience: 10,
            schedule: Schedule::Constant,
            text_column: None,
            n_features: 4096,
            ngram_max: 1,
            tfidf: true,
            pca: None,
            n_trees: 100,
            max_depth: usize::MAX,
            max_leaves: usize::MAX,
            min_rows_per_leaf: 1,
            max_bins: 255,
            feature_fraction: None,
            categorical: Vec::new(),
            max_categories: 100,
        };
        if kind == ModelKind::LinearSvm {
            // A small L2 keeps the margin wide (the SVM's regularisation, 1/C).
            return Self { l2: 1e-3, ..linear };
        }
        if matches!(kind, ModelKind::DecisionTreeClassifier | ModelKind::DecisionTreeRegressor) {
            return Self { n_trees: 1, ..linear };
        }
        if kind.is_boosted() {
            // LightGBM's and HistGradientBoosting's defaults.
            return Self { max_leaves: 31, min_rows_per_leaf: 20, ..linear };
        }
        if kind.is_mlp() {
            Self {
                learning_rate: 0.001,
                epochs: 200,
                batch_size: 200,
                l2: 1e-4,
                hidden: vec![64],
                optimizer: Optimizer::Adam,
                ..linear
            }
        } else {
            linear
        }
    }

    /// Defaults for `kind` overridden by string pairs; unknown names and values out of
    /// range are refused naming the field and what is allowed.
    pub fn from_map(kind: ModelKind, params: &BTreeMap<String, String>) -> Result<Self> {
        let mut out = Self::defaults_for(kind);
        for (name, value) in params {
            let value = value.trim();
            if kind.is_tree() && DENSE_ONLY.contains(&name.as_str()) {
                let hint = if name == "epochs" { "; trees grow n_trees trees (boosting rounds for gbdt)" } else { "" };
                return Err(invalid(name, format!("applies to the dense kinds, not to {}{hint}", kind.name())));
            }
            if !kind.is_tree() && TREE_ONLY.contains(&name.as_str()) {
                return Err(invalid(name, format!("applies to the tree kinds, not to {}", kind.name())));
            }
            if kind.is_tree()
                && !kind.is_boosted()
                && ["learning_rate", "l2", "alpha", "early_stopping", "patience"].contains(&name.as_str())
            {
                return Err(invalid(name, format!("applies to gbdt and the dense kinds, not to {}", kind.name())));
            }
            let single_tree = matches!(kind, ModelKind::DecisionTreeClassifier | ModelKind::DecisionTreeRegressor);
            if single_tree && (name == "n_trees" || name == "n_estimators") {
                return Err(invalid(name, "a decision tree is one tree; random_forest grows many"));
            }
            match name.as_str() {
                "n_trees" | "n_estimators" => out.n_trees = parse(name, value, "a whole number")?,
                "max_depth" if value == "none" => out.max_depth = usize::MAX,
                "max_depth" => out.max_depth = parse(name, value, "a whole number or none")?,
                "max_leaves" | "num_leaves" if value == "none" => out.max_leaves = usize::MAX,
                "max_leaves" | "num_leaves" => out.max_leaves = parse(name, value, "a whole number or none")?,
                "min_rows_per_leaf" | "min_samples_leaf" => {
                    out.min_rows_per_leaf = parse(name, value, "a whole number")?
                }
                "max_bins" => out.max_bins = parse(name, value, "a whole number")?,
                "feature_fraction" | "max_features" => {
                    out.feature_fraction = Some(parse(name, value, "a number in (0, 1]")?);
                }
                "learning_rate" => out.learning_rate = parse(name, value, "a number")?,
                "epochs" => out.epochs = parse(name, value, "a whole number")?,
                "batch_size" => out.batch_size = parse(name, value, "a whole number")?,
                "l2" | "alpha" => out.l2 = parse(name, value, "a number")?,
                "seed" => out.seed = parse(name, value, "a whole number")?,
                "validation_fraction" => out.validation_fraction = parse(name, value, "a number")?,
                "momentum" => out.momentum = parse(name, value, "a number")?,
                "patience" => out.patience = parse(name, value, "a whole number")?,
                "early_stopping" => out.early_stopping = parse(name, value, "true or false")?,
                "hidden" => {
                    if !kind.is_mlp() {
                        return Err(invalid(
                            name,
                            format!("only MLP kinds have hidden layers; {} has none", kind.name()),
                        ));
                    }
                    out.hidden = value
                        .split(',')
                        .map(|size| parse::<usize>(name, size, "a comma-separated list of layer sizes"))
                        .collect::<Result<_>>()?;
                    for size in &out.hidden {
                        check_range(name, *size as f64, 1.0, 65_536.0, true, true)?;
                    }
                }
                "activation" => {
                    out.activation = match value {
                        "relu" => Activation::Relu,
                        "tanh" => Activation::Tanh,
                        other => {
                            return Err(invalid(
                                name,
                                format!("{other:?} is not an activation; expected relu or tanh"),
                            ));
                        }
                    }
                }
                "optimizer" => {
                    out.optimizer = match value {
                        "sgd" => Optimizer::Sgd,
                        "adam" => Optimizer::Adam,
                        other => {
                            return Err(invalid(name, format!("{other:?} is not an optimizer; expected sgd or adam")));
                        }
                    }
                }
                "lr_schedule" => {
                    out.schedule = match value {
                        "constant" => Schedule::Constant,
                        "cosine" => Schedule::Cosine,
                        other => {
                            return Err(invalid(
                                name,
                                format!("{other:?} is not a schedule; expected constant or cosine"),
                            ));
                        }
                    }
                }
                "text_column" => out.text_column = (!value.is_empty()).then(|| value.to_owned()),
                "categorical" | "categorical_feature" => {
                    out.categorical =
                        value.split(',').map(str::trim).filter(|c| !c.is_empty()).map(str::to_owned).collect();
                }
                "max_categories" => out.max_categories = parse(name, value, "a whole number")?,
                "n_features" => out.n_features = parse(name, value, "a whole number")?,
                "ngram_max" => out.ngram_max = parse(name, value, "a whole number")?,
                "tfidf" => out.tfidf = parse(name, value, "true or false")?,
                "pca" => {
                    let share: f64 = parse(name, value, "a component count or a variance share in (0, 1)")?;
                    out.pca = Some(if share > 0.0 && share < 1.0 {
                        Components::Variance(share)
                    } else if share >= 1.0 && share.fract() == 0.0 && share <= 65_536.0 {
                        Components::Count(share as usize)
                    } else {
                        return Err(invalid(
                            name,
                            format!("{value} is neither a component count (1, 2, …) nor a variance share in (0, 1)"),
                        ));
                    });
                }
                other => {
                    return Err(invalid(other, format!("unknown parameter; expected one of {NAMES}")));
                }
            }
        }
        check_range("learning_rate", f64::from(out.learning_rate), 0.0, 10.0, false, true)?;
        check_range("epochs", f64::from(out.epochs), 1.0, 100_000.0, true, true)?;
        check_range("batch_size", out.batch_size as f64, 1.0, 1_000_000.0, true, true)?;
        check_range("l2", f64::from(out.l2), 0.0, 100.0, true, true)?;
        check_range("validation_fraction", out.validation_fraction, 0.0, 0.9, true, true)?;
        check_range("momentum", f64::from(out.momentum), 0.0, 1.0, true, false)?;
        check_range("patience", f64::from(out.patience), 1.0, 10_000.0, true, true)?;
        check_range("n_features", out.n_features as f64, 16.0, 65_536.0, true, true)?;
        check_range("ngram_max", out.ngram_max as f64, 1.0, 3.0, true, true)?;
        check_range("n_trees", out.n_trees as f64, 1.0, 100_000.0, true, true)?;
        if out.max_depth != usize::MAX {
            check_range("max_depth", out.max_depth as f64, 1.0, 1024.0, true, true)?;
        }
        if out.max_leaves != usize::MAX {
            check_range("max_leaves", out.max_leaves as f64, 2.0, 1_048_576.0, true, true)?;
        }
        check_range("min_rows_per_leaf", out.min_rows_per_leaf as f64, 1.0, 1_000_000.0, true, true)?;
        check_range("max_bins", out.max_bins as f64, 2.0, 255.0, true, true)?;
        if kind.is_tree() && out.max_categories > crate::MAX_TREE_CATEGORIES {
            return Err(invalid(
                "max_categories",
                format!(
                    "is {}; a tree kind splits on at most {} categories a column (the rarer ones share one branch)",
                    out.max_categories,
                    crate::MAX_TREE_CATEGORIES
                ),
            ));
        }
        check_range("max_categories", out.max_categories as f64, 1.0, 65_536.0, true, true)?;
        if out.text_column.is_some() && !out.categorical.is_empty() {
            return Err(invalid("categorical", "a text model's only input is its text column"));
        }
        if let Some(fraction) = out.feature_fraction {
            check_range("feature_fraction", fraction, 0.0, 1.0, false, true)?;
        }
        if out.text_column.is_some() && out.pca.is_some() {
            return Err(invalid("pca", "PCA applies to numeric features; a text model has none"));
        }
        if kind.is_mlp() && out.hidden.is_empty() {
            return Err(invalid("hidden", "an MLP needs at least one hidden layer, e.g. hidden=64"));
        }
        Ok(out)
    }

    /// The parameters `kind` uses as string pairs, for lineage.
    pub fn to_map_for(&self, kind: ModelKind) -> BTreeMap<String, String> {
        if !kind.is_tree() {
            return self.to_map();
        }
        let limit = |value: usize| if value == usize::MAX { "none".to_owned() } else { value.to_string() };
        let mut map: BTreeMap<String, String> = [
            ("n_trees", self.n_trees.to_string()),
            ("max_depth", limit(self.max_depth)),
            ("max_leaves", limit(self.max_leaves)),
            ("min_rows_per_leaf", self.min_rows_per_leaf.to_string()),
            ("max_bins", self.max_bins.to_string()),
            ("seed", self.seed.to_string()),
            ("validation_fraction", self.validation_fraction.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        if let Some(fraction) = self.feature_fraction {
            map.insert("feature_fraction".into(), fraction.to_string());
        }
        self.insert_categorical(&mut map);
        if kind.is_boosted() {
            map.insert("learning_rate".into(), self.learning_rate.to_string());
            map.insert("l2".into(), self.l2.to_string());
            map.insert("early_stopping".into(), self.early_stopping.to_string());
            map.insert("patience".into(), self.patience.to_string());
        }
        map
    }

    /// The parameters as string pairs, for lineage (the dense kinds').
    pub fn to_map(&self) -> BTreeMap<String, String> {
        let mut map: BTreeMap<String, String> = [
            ("learning_rate", self.learning_rate.to_string()),
            ("epochs", self.epochs.to_string()),
            ("batch_size", self.batch_size.to_string()),
            ("l2", self.l2.to_string()),
            ("seed", self.seed.to_string()),
            ("validation_fraction", self.validation_fraction.to_string()),
            ("optimizer", format!("{:?}", self.optimizer).to_lowercase()),
            ("momentum", self.momentum.to_string()),
            ("early_stopping", self.early_stopping.to_string()),
            ("patience", self.patience.to_string()),
            ("lr_schedule", format!("{:?}", self.schedule).to_lowercase()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        if let Some(column) = &self.text_column {
            map.insert("text_column".into(), column.clone());
            map.insert("n_features".into(), self.n_features.to_string());
            map.insert("ngram_max".into(), self.ngram_max.to_string());
            map.insert("tfidf".into(), self.tfidf.to_string());
        }
        match self.pca {
            Some(Components::Count(k)) => {
                map.insert("pca".into(), k.to_string());
            }
            Some(Components::Variance(share)) => {
                map.insert("pca".into(), share.to_string());
            }
            None => {}
        }
        self.insert_categorical(&mut map);
        if !self.hidden.is_empty() {
            let sizes: Vec<String> = self.hidden.iter().map(ToString::to_string).collect();
            map.insert("hidden".into(), sizes.join(","));
            map.insert("activation".into(), format!("{:?}", self.activation).to_lowercase());
        }
        map
    }

    /// The categorical settings, when they differ from the defaults.
    fn insert_categorical(&self, map: &mut BTreeMap<String, String>) {
        if !self.categorical.is_empty() {
            map.insert("categorical".into(), self.categorical.join(","));
        }
        if self.max_categories != Self::defaults_for(ModelKind::LinearRegression).max_categories {
            map.insert("max_categories".into(), self.max_categories.to_string());
        }
    }

    /// The learning rate for an epoch (from 1).
    pub fn rate_at(&self, epoch: u32) -> f32 {
        match self.schedule {
            Schedule::Constant => self.learning_rate,
            Schedule::Cosine => {
                let progress = (epoch - 1) as f32 / self.epochs.max(1) as f32;
                self.learning_rate * 0.5 * (1.0 + (std::f32::consts::PI * progress).cos())
            }
        }
    }
}
