//! Who may call what: one table from gRPC method to the permission it needs, and which
//! permissions each role holds. A method missing from the table needs
//! [`Permission::Unlisted`], which no role holds: default deny, so a new RPC is refused
//! until someone decides who may call it (a test walks every method of every service
//! modelplane serves and fails on one without an entry).
//!
//! This is the authorization half of the security work (issue 23); the authentication
//! layer that finds a caller's role from its key or certificate consults it.

/// A caller's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything, including key management.
    Admin,
    /// Aliases, deployments, version lifecycle, repository load/unload; reads.
    Deployer,
    /// Datasets, training jobs, version uploads; reads.
    Trainer,
    /// Inference and model metadata.
    Predictor,
    /// Read-only: registry, statistics, audit, jobs.
    Viewer,
    /// A worker: reads versions and deployments, downloads artifacts; serves inference.
    Worker,
    /// A modelplane service acting for itself (the trainer registering and promoting
    /// what it trained, the router reading the registry).
    Service,
}

impl Role {
    /// Every role, for listings and exhaustive tests.
    pub const ALL: [Role; 7] =
        [Role::Admin, Role::Deployer, Role::Trainer, Role::Predictor, Role::Viewer, Role::Worker, Role::Service];

    /// The role's name in keys, flags and messages.
    pub const fn name(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Deployer => "deployer",
            Role::Trainer => "trainer",
            Role::Predictor => "predictor",
            Role::Viewer => "viewer",
            Role::Worker => "worker",
            Role::Service => "service",
        }
    }

    /// The role named `name`; the error lists the names there are.
    pub fn parse(name: &str) -> Result<Self, String> {
        Self::ALL.into_iter().find(|role| role.name() == name).ok_or_else(|| {
            let names: Vec<&str> = Self::ALL.iter().map(|role| role.name()).collect();
            format!("unknown role {name:?}; expected one of {}", names.join(", "))
        })
    }
}

/// Whether `role` may do what `permission` guards.
pub fn allows(role: Role, permission: Permission) -> bool {
    use Permission as P;
    match permission {
        P::Public => true,
        P::Unlisted => false,
        _ if role == Role::Admin => true,
        P::Infer | P::ReadModels => {
            matches!(role, Role::Predictor | Role::Deployer | Role::Viewer | Role::Worker | Role::Service)
        }
        P::ReadRegistry | P::DownloadArtifacts => role != Role::Predictor,
        P::ReadStatistics => !matches!(role, Role::Trainer),
        P::ReadAudit => role == Role::Viewer,
        P::Deploy => role == Role::Deployer,
        P::UploadVersions => matches!(role, Role::Trainer | Role::Service),
        P::Promote => matches!(role, Role::Deployer | Role::Service),
        P::WriteDatasets | P::Train => role == Role::Trainer,
        P::ReadDatasets => matches!(role, Role::Trainer | Role::Viewer | Role::Service),
        P::ReadJobs => matches!(role, Role::Trainer | Role::Viewer | Role::Deployer),
        P::DeleteModels | P::ManageKeys => false,
    }
}

/// What a method needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Permission {
    /// Health and reflection: open to probes and tools without a key.
    Public,
    /// Inference on a model.
    Infer,
    /// A model's metadata, readiness and configuration (what a predictor needs).
    ReadModels,
    /// Per-model statistics and the repository index.
    ReadStatistics,
    /// Models, versions, aliases, deployments, workers, dataset records.
    ReadRegistry,
    /// Artifact bytes.
    DownloadArtifacts,
    /// Creating models and uploading versions.
    UploadVersions,
    /// Setting an alias (a deployer, or the trainer applying a `promote_if` rule).
    Promote,
    /// Deployments, alias removal, archiving, repository load/unload.
    Deploy,
    /// Deleting models and versions.
    DeleteModels,
    /// Uploading and deleting datasets.
    WriteDatasets,
    /// Dataset bytes.
    ReadDatasets,
    /// Submitting and cancelling training jobs.
    Train,
    /// Reading and watching training jobs.
    ReadJobs,
    /// The audit log.
    ReadAudit,
    /// Creating, listing and revoking API keys.
    ManageKeys,
    /// A method nobody has classified: refused for every role.
    Unlisted,
}

const REGISTRY: &str = "/modelplane.registry.v1.Registry/";
const TRAINER: &str = "/modelplane.trainer.v1.Trainer/";
const INFERENCE: &str = "/inference.GRPCInferenceService/";

/// The permission the gRPC method at `path` (`/package.Service/Method`) needs.
pub fn permission(path: &str) -> Permission {
    use Permission as P;
    if path.starts_with("/grpc.health.v1.Health/")
        || path.starts_with("/grpc.reflection.v1.ServerReflection/")
        || path.starts_with("/grpc.reflection.v1alpha.ServerReflection/")
    {
        return P::Public;
    }
    if let Some(method) = path.strip_prefix(REGISTRY) {
        return match method {
            "GetModel" | "ListModels" | "GetVersion" | "ListVersions" | "GetAlias" | "GetDeployment"
            | "ListDeployments" | "ListWorkers" | "ListDatasets" | "GetDataset" => P::ReadRegistry,
            "DownloadArtifact" => P::DownloadArtifacts,
            "CreateModel" | "UpdateModel" | "UploadVersion" => P::UploadVersions,
            "SetAlias" => P::Promote,
            "DeleteAlias" | "SetDeployment" | "DeleteDeployment" | "ArchiveVersion" => P::Deploy,
            "DeleteModel" | "DeleteVersion" => P::DeleteModels,
            "UploadDataset" | "DeleteDataset" => P::WriteDatasets,
            "DownloadDataset" => P::ReadDatasets,
            "ListAudit" => P::ReadAudit,
            "CreateKey" | "ListKeys" | "RevokeKey" => P::ManageKeys,
            _ => P::Unlisted,
        };
    }
    if let Some(method) = path.strip_prefix(TRAINER) {
        return match method {
            "SubmitJob" | "CancelJob" => P::Train,
            "GetJob" | "WatchJob" | "ListJobs" => P::ReadJobs,
            _ => P::Unlisted,
        };
    }
    if let Some(method) = path.strip_prefix(INFERENCE) {
        return match method {
            // The KServe v2 health calls, open as `/v2/health/*` is.
            "ServerLive" | "ServerReady" => P::Public,
            "ModelReady" | "ServerMetadata" | "ModelMetadata" | "ModelConfig" => P::ReadModels,
            "ModelInfer" | "ModelStreamInfer" => P::Infer,
            "ModelStatistics" | "RepositoryIndex" => P::ReadStatistics,
            "RepositoryModelLoad" | "RepositoryModelUnload" => P::Deploy,
            _ => P::Unlisted,
        };
    }
    P::Unlisted
}

/// How a server admits its callers (the `--anonymous-role` and failure-limit flags).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerAccess {
    /// What a caller without a key may do; `None`: nothing but health and reflection.
    pub anonymous: Option<Role>,
    /// Failed authentications per client address and minute before it is refused for
    /// the rest of the minute; 0: no limit.
    pub failures_per_minute: u32,
    /// TLS (and mTLS) on the server's listeners; `None`: plaintext.
    pub tls: Option<crate::tls::ServerTls>,
    /// Roles of callers that send no key but an mTLS client certificate (`--mtls-role`).
    pub certificate_roles: crate::CertificateRoles,
}

impl Default for ServerAccess {
    /// Default deny: every call but health needs a key.
    fn default() -> Self {
        Self {
            anonymous: None,
            failures_per_minute: crate::DEFAULT_FAILURES_PER_MINUTE,
            tls: None,
            certificate_roles: crate::CertificateRoles::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    /// Every method of every service modelplane serves, as `/package.Service/Method`.
    fn served_methods() -> Vec<String> {
        let mut methods = Vec::new();
        for encoded in [modelplane_proto::FILE_DESCRIPTOR_SET, tonic_health::pb::FILE_DESCRIPTOR_SET] {
            let set = prost_types::FileDescriptorSet::decode(encoded).expect("descriptor set decodes");
            for file in set.file {
                for service in &file.service {
                    for method in &service.method {
                        methods.push(format!("/{}.{}/{}", file.package(), service.name(), method.name()));
                    }
                }
            }
        }
        methods
    }

    #[test]
    fn every_served_method_has_an_entry() {
        let methods = served_methods();
        assert!(methods.len() > 40, "found only {methods:?}");
        for service in ["Registry", "Trainer", "GRPCInferenceService", "Health"] {
            assert!(methods.iter().any(|m| m.contains(&format!(".{service}/"))), "no {service} methods");
        }
        let unlisted: Vec<&String> = methods.iter().filter(|m| permission(m) == Permission::Unlisted).collect();
        assert!(unlisted.is_empty(), "methods without a permission (default deny): {unlisted:?}");
    }

    #[test]
    fn unknown_methods_are_denied_to_everyone() {
        for path in ["/modelplane.registry.v1.Registry/DropEverything", "/other.Service/Call", "", "/"] {
            assert_eq!(permission(path), Permission::Unlisted, "{path}");
            assert!(Role::ALL.iter().all(|role| !allows(*role, permission(path))), "{path}");
        }
    }

    #[test]
    fn roles_hold_what_the_issue_gives_them() {
        let can = |role: Role, method: &str| allows(role, permission(method));
        let registry = |m: &str| format!("{REGISTRY}{m}");
        let inference = |m: &str| format!("{INFERENCE}{m}");
        for role in Role::ALL {
            assert!(can(role, "/grpc.health.v1.Health/Check"), "{role:?} health");
            assert!(can(role, &inference("ServerReady")), "{role:?} readiness");
        }
        assert!(Role::ALL.iter().all(|role| can(*role, &registry("DeleteModel")) == (*role == Role::Admin)));
        assert!(can(Role::Predictor, &inference("ModelInfer")));
        assert!(!can(Role::Predictor, &registry("ListModels")), "a predictor reads no registry");
        assert!(!can(Role::Worker, &registry("UploadVersion")), "a worker cannot upload a version");
        assert!(!can(Role::Trainer, &registry("SetAlias")), "a trainer cannot flip an alias");
        assert!(can(Role::Service, &registry("SetAlias")), "the trainer service applies promote_if");
        assert!(can(Role::Trainer, &registry("UploadDataset")) && can(Role::Trainer, &format!("{TRAINER}SubmitJob")));
        assert!(can(Role::Deployer, &registry("SetDeployment")) && !can(Role::Deployer, &registry("UploadVersion")));
        assert!(can(Role::Viewer, &registry("ListAudit")) && !can(Role::Viewer, &registry("SetAlias")));
        assert!(can(Role::Worker, &registry("DownloadArtifact")));
    }

    #[test]
    fn roles_parse_by_name_and_store_as_it() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.name()), Ok(role));
            assert_eq!(serde_json::to_string(&role).expect("encodes"), format!("\"{}\"", role.name()));
        }
        let err = Role::parse("root").expect_err("unknown");
        assert!(err.contains("admin, deployer, trainer, predictor, viewer, worker, service"), "{err}");
    }
}
