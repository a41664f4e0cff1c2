//! What a version's artifact is, and everything that follows from it: how it is named
//! in import requests and records, what platform and backend a model configuration
//! reports, and the file it is cached as.

use std::fmt;

/// The format of a version's artifact.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ArtifactFormat {
    /// A modelplane artifact: safetensors weights with the manifest in their metadata,
    /// served by the ndarray models.
    Modelplane,
    /// An ONNX graph made elsewhere, served with tract.
    Onnx,
    /// An ONNX graph with its tensors in side files (ONNX external data, the way past
    /// protobuf's 2 GB): an uncompressed tar holding the graph as `model.onnx` and each
    /// data file at the relative path the graph names.
    OnnxArchive,
}

/// Where an [`ArtifactFormat::OnnxArchive`] keeps its graph.
pub const ARCHIVE_GRAPH: &str = "model.onnx";

impl ArtifactFormat {
    /// The format's name in import requests (`ImportVersion.format`) and, for ONNX, in
    /// a version record's `kind`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Modelplane => "modelplane",
            Self::Onnx => "onnx",
            Self::OnnxArchive => "onnx_archive",
        }
    }

    /// Whether it is served by tract (either ONNX form).
    pub const fn is_onnx(self) -> bool {
        matches!(self, Self::Onnx | Self::OnnxArchive)
    }

    /// The format an import request names: empty is modelplane's own.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "" | "modelplane" => Some(Self::Modelplane),
            "onnx" => Some(Self::Onnx),
            "onnx_archive" => Some(Self::OnnxArchive),
            _ => None,
        }
    }

    /// The format of a version recorded with `kind` (a native kind such as `linear`, or
    /// `onnx`).
    pub fn of_kind(kind: &str) -> Self {
        match kind {
            "onnx" => Self::Onnx,
            "onnx_archive" => Self::OnnxArchive,
            _ => Self::Modelplane,
        }
    }

    /// The platform a model configuration and model metadata report, as Triton's
    /// `onnxruntime_onnx` says which runtime serves a version.
    pub const fn platform(self) -> &'static str {
        match self {
            Self::Modelplane => "modelplane_ndarray",
            Self::Onnx | Self::OnnxArchive => "tract_onnx",
        }
    }

    /// The backend a model configuration reports.
    pub const fn backend(self) -> &'static str {
        match self {
            Self::Modelplane => "modelplane",
            Self::Onnx | Self::OnnxArchive => "tract",
        }
    }

    /// The file name extension a worker caches the artifact under.
    pub const fn file_extension(self) -> &'static str {
        match self {
            Self::Modelplane => "safetensors",
            Self::Onnx => "onnx",
            Self::OnnxArchive => "onnx.tar",
        }
    }
}

impl fmt::Display for ArtifactFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_and_kinds_say_the_format() {
        for format in [ArtifactFormat::Modelplane, ArtifactFormat::Onnx, ArtifactFormat::OnnxArchive] {
            assert_eq!(ArtifactFormat::parse(format.name()), Some(format));
        }
        assert_eq!(ArtifactFormat::parse(""), Some(ArtifactFormat::Modelplane));
        assert_eq!(ArtifactFormat::parse("pytorch"), None);
        assert_eq!(ArtifactFormat::of_kind("onnx"), ArtifactFormat::Onnx);
        assert_eq!(ArtifactFormat::of_kind("onnx_archive"), ArtifactFormat::OnnxArchive);
        assert_eq!(ArtifactFormat::of_kind("mlp"), ArtifactFormat::Modelplane);
    }
}
