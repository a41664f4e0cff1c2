//! Authentication and authorization of every gRPC call, in one tower layer: the method's
//! permission comes from [`crate::access::permission`] (public methods pass untouched),
//! the caller from its `authorization` header through an [`Authenticator`] — or, without
//! one, from its verified mTLS client certificate ([`CertificateRoles`]) or the anonymous
//! role, when there is one — and a caller whose role lacks the permission is
//! PERMISSION_DENIED. The caller rides on in the request's extensions, so handlers can
//! scope model names and name the actor.
//! An address that fails authentication too often is refused for a while
//! ([`FailureLimit`]). The router's REST port admits its calls through the same
//! [`AuthLayer::admit`], naming the gRPC method each route stands for.

use std::net::IpAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::{Either, Ready, ready};
use tower::{Layer, Service};

use rustls::pki_types::CertificateDer;

use crate::access::{Permission, Role, allows, permission};
use crate::certificate_roles::CertificateRoles;
use crate::credentials::{Presented, Refusal, parse_bearer};
use crate::failure_limit::FailureLimit;

/// The name of callers without a key.
pub const ANONYMOUS: &str = "anonymous";

/// Who is calling, as the handlers see it (in the request's extensions).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The key's name (the audit log's actor), or `anonymous`.
    pub name: String,
    pub role: Role,
    /// Model names the caller is limited to (those starting with it); empty: all.
    pub model_prefix: String,
}

impl Caller {
    /// Whether the caller may touch `model`.
    pub fn may_use_model(&self, model: &str) -> bool {
        model.starts_with(&self.model_prefix)
    }

    /// PERMISSION_DENIED unless the caller may touch `model`.
    pub fn reach(&self, model: &str) -> Result<(), tonic::Status> {
        if self.may_use_model(model) {
            return Ok(());
        }
        Err(tonic::Status::permission_denied(format!(
            "this key is limited to models starting with {:?}; {model:?} is not one",
            self.model_prefix
        )))
    }
}

/// PERMISSION_DENIED unless the caller of a request with these `extensions` may touch
/// `model`. A request without a [`Caller`] called a public method or came through no
/// [`AuthLayer`] (a service built into a test) and is not limited.
pub fn reach_model(extensions: &http::Extensions, model: &str) -> Result<(), tonic::Status> {
    extensions.get::<Caller>().map_or(Ok(()), |caller| caller.reach(model))
}

/// Finds and checks the key a caller presents. Must answer from memory: it runs on
/// every call.
pub trait Authenticator: Send + Sync + 'static {
    fn authenticate(&self, presented: &Presented<'_>) -> Result<Caller, Refusal>;
}

/// Installs [`Authenticate`].
#[derive(Clone)]
pub struct AuthLayer {
    authenticator: Arc<dyn Authenticator>,
    anonymous: Option<Role>,
    certificate_roles: Arc<CertificateRoles>,
    failures: Arc<FailureLimit>,
}

impl AuthLayer {
    /// Callers without a key act as `anonymous` (`None`: they are refused); an address
    /// with `failures_per_minute` failed authentications in a minute is refused for the
    /// rest of it (0: never).
    pub fn new(authenticator: Arc<dyn Authenticator>, anonymous: Option<Role>, failures_per_minute: u32) -> Self {
        Self {
            authenticator,
            anonymous,
            certificate_roles: Arc::default(),
            failures: Arc::new(FailureLimit::new(failures_per_minute)),
        }
    }

    /// Callers without a key whose client certificate a rule of `roles` maps act with
    /// that role (named `cert:NAME`), ahead of the anonymous role.
    pub fn with_certificate_roles(mut self, roles: CertificateRoles) -> Self {
        self.certificate_roles = Arc::new(roles);
        self
    }

    /// A layer that knows no key: every presented key is refused, and callers without
    /// one act as `anonymous`. For servers built into tests and tools, which have no store.
    pub fn without_keys(anonymous: Option<Role>) -> Self {
        Self::new(Arc::new(NoKeys), anonymous, 0)
    }
}

/// See [`AuthLayer::without_keys`].
struct NoKeys;

impl Authenticator for NoKeys {
    fn authenticate(&self, _: &Presented<'_>) -> Result<Caller, Refusal> {
        Err(Refusal::Invalid)
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Authenticate<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Authenticate { inner, layer: self.clone() }
    }
}

/// See the module docs.
#[derive(Clone)]
pub struct Authenticate<S> {
    inner: S,
    layer: AuthLayer,
}

impl AuthLayer {
    /// The caller of a call to `path` (a gRPC method path) from `peer` with this
    /// `authorization` header and these verified client `certificates` (own first), or
    /// the status that refuses it. `None`: the method is public.
    pub fn admit(
        &self,
        path: &str,
        authorization: Option<&[u8]>,
        peer: Option<IpAddr>,
        certificates: Option<&[CertificateDer<'_>]>,
    ) -> Result<Option<Caller>, tonic::Status> {
        let needed = permission(path);
        if needed == Permission::Public {
            return Ok(None);
        }
        if let Some(left) = peer.and_then(|peer| self.failures.blocked_for(peer)) {
            return Err(tonic::Status::resource_exhausted(format!(
                "too many failed authentications from this address; try again in {} s",
                left.as_secs().max(1)
            )));
        }
        let caller = self.authenticate(authorization, certificates);
        // A missing key is not a guess; only presented keys count against the address.
        if let (Err(_), Some(peer), Some(_)) = (&caller, peer, authorization) {
            self.failures.record_failure(peer);
        }
        let caller = caller?;
        self.authorize(caller, needed, path, authorization.is_none()).map(Some)
    }

    fn authenticate(
        &self,
        authorization: Option<&[u8]>,
        certificates: Option<&[CertificateDer<'_>]>,
    ) -> Result<Caller, tonic::Status> {
        let header = authorization.map(|value| std::str::from_utf8(value).map_err(|_| Refusal::Malformed)).transpose();
        let presented = header.and_then(parse_bearer);
        // A key, when one is sent, says who calls; a certificate only stands in for none.
        let certified = || certificates.and_then(|chain| self.certificate_roles.role_of(chain));
        match (presented, self.anonymous) {
            (Ok(presented), _) => self.authenticator.authenticate(&presented),
            (Err(Refusal::Missing), anonymous) => match (certified(), anonymous) {
                (Some((name, role)), _) => {
                    Ok(Caller { name: format!("cert:{name}"), role, model_prefix: String::new() })
                }
                (None, Some(role)) => Ok(Caller { name: ANONYMOUS.into(), role, model_prefix: String::new() }),
                (None, None) => Err(Refusal::Missing),
            },
            (Err(refusal), _) => Err(refusal),
        }
        .map_err(|refusal| tonic::Status::unauthenticated(refusal.message()))
    }

    fn authorize(
        &self,
        caller: Caller,
        needed: Permission,
        path: &str,
        anonymous: bool,
    ) -> Result<Caller, tonic::Status> {
        if allows(caller.role, needed) {
            return Ok(caller);
        }
        let method = path.rsplit('/').next().unwrap_or(path);
        if anonymous && caller.name == ANONYMOUS {
            return Err(tonic::Status::unauthenticated(format!(
                "{method} needs an API key (callers without one act as {}); {}",
                caller.role.name(),
                Refusal::Missing.message()
            )));
        }
        Err(tonic::Status::permission_denied(format!(
            "a {} key may not call {method} (it needs the {needed:?} permission)",
            caller.role.name()
        )))
    }
}

impl<S, B, ResBody> Service<http::Request<B>> for Authenticate<S>
where
    S: Service<http::Request<B>, Response = http::Response<ResBody>>,
    ResBody: Default,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = Either<S::Future, Ready<Result<Self::Response, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let authorization = request.headers().get(http::header::AUTHORIZATION).map(|value| value.as_bytes());
        let extensions = request.extensions();
        let tls =
            extensions.get::<tonic::transport::server::TlsConnectInfo<tonic::transport::server::TcpConnectInfo>>();
        let tcp = extensions.get::<tonic::transport::server::TcpConnectInfo>().or_else(|| tls.map(|tls| tls.get_ref()));
        let peer = tcp.and_then(|info| info.remote_addr()).map(|addr| addr.ip());
        let certificates = tls.and_then(|tls| tls.peer_certs());
        match self.layer.admit(request.uri().path(), authorization, peer, certificates.as_deref().map(Vec::as_slice)) {
            Ok(caller) => {
                if let Some(caller) = caller {
                    request.extensions_mut().insert(caller);
                }
                Either::Left(self.inner.call(request))
            }
            Err(status) => Either::Right(ready(Ok(status.into_http()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use tower::ServiceExt;

    use super::*;

    /// One known key, checked as the store-backed authenticator will.
    struct OneKey;

    const ID: &str = "0123456789abcdef";
    const SECRET: &str = "00000000000000000000000000000000000000000000000000000000000000ff";

    impl Authenticator for OneKey {
        fn authenticate(&self, presented: &Presented<'_>) -> Result<Caller, Refusal> {
            if presented.id == ID && presented.secret == SECRET {
                Ok(Caller { name: "ci".into(), role: Role::Predictor, model_prefix: "team-a/".into() })
            } else {
                Err(Refusal::Invalid)
            }
        }
    }

    async fn call(anonymous: Option<Role>, path: &str, authorization: Option<&str>) -> (tonic::Code, String) {
        let inner = tower::service_fn(|request: http::Request<()>| async move {
            let caller = request.extensions().get::<Caller>().map(|c| c.name.clone()).unwrap_or_default();
            Ok::<_, Infallible>(tonic::Status::ok(caller).into_http::<String>())
        });
        let service = AuthLayer::new(Arc::new(OneKey), anonymous, 0).layer(inner);
        let mut request = http::Request::builder().uri(format!("http://localhost{path}"));
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        let response = service.oneshot(request.body(()).expect("request")).await.expect("answer");
        let status = tonic::Status::from_header_map(response.headers()).expect("a grpc-status");
        (status.code(), status.message().to_owned())
    }

    const INFER: &str = "/inference.GRPCInferenceService/ModelInfer";
    const SET_ALIAS: &str = "/modelplane.registry.v1.Registry/SetAlias";

    #[tokio::test]
    async fn keys_roles_and_anonymous_callers() {
        let key = format!("Bearer mpk_{ID}_{SECRET}");
        assert_eq!(call(None, INFER, Some(&key)).await, (tonic::Code::Ok, "ci".into()), "the caller rides on");
        let (code, message) = call(None, SET_ALIAS, Some(&key)).await;
        assert_eq!(code, tonic::Code::PermissionDenied, "{message}");
        assert!(message.contains("predictor") && message.contains("SetAlias"), "{message}");

        let (code, message) = call(None, INFER, None).await;
        assert_eq!((code, message.as_str()), (tonic::Code::Unauthenticated, Refusal::Missing.message()));
        let wrong = format!("Bearer mpk_{ID}_{}", "1".repeat(64));
        assert_eq!(call(None, INFER, Some(&wrong)).await.0, tonic::Code::Unauthenticated);
        assert_eq!(call(None, INFER, Some("Basic dXNlcg==")).await.0, tonic::Code::Unauthenticated);

        let (code, _) = call(Some(Role::Predictor), INFER, None).await;
        assert_eq!(code, tonic::Code::Ok, "anonymous predictors may infer");
        let (code, message) = call(Some(Role::Predictor), SET_ALIAS, None).await;
        assert_eq!(code, tonic::Code::Unauthenticated, "{message}");
        assert!(message.contains("needs an API key"), "{message}");
        let (code, _) = call(Some(Role::Predictor), INFER, Some(&wrong)).await;
        assert_eq!(code, tonic::Code::Unauthenticated, "a bad key is not anonymous");

        let health = "/grpc.health.v1.Health/Check";
        assert_eq!(call(None, health, None).await.0, tonic::Code::Ok, "health stays open");
        let unknown = "/modelplane.registry.v1.Registry/DropEverything";
        assert_eq!(call(None, unknown, Some(&key)).await.0, tonic::Code::PermissionDenied, "default deny");
    }

    #[test]
    fn repeated_failures_from_one_address_are_refused_even_with_a_right_key() {
        let layer = AuthLayer::new(Arc::new(OneKey), None, 2);
        let peer = Some("192.0.2.7".parse().expect("ip"));
        let wrong = format!("Bearer mpk_{ID}_{}", "1".repeat(64));
        for _ in 0..2 {
            let refused = layer.admit(INFER, Some(wrong.as_bytes()), peer, None).expect_err("wrong key");
            assert_eq!(refused.code(), tonic::Code::Unauthenticated);
        }
        let right = format!("Bearer mpk_{ID}_{SECRET}");
        let refused = layer.admit(INFER, Some(right.as_bytes()), peer, None).expect_err("slowed down");
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted, "{}", refused.message());
        assert!(layer.admit(INFER, Some(right.as_bytes()), Some("192.0.2.8".parse().expect("ip")), None).is_ok());
        assert!(layer.admit("/grpc.health.v1.Health/Check", None, peer, None).is_ok(), "probes stay open");
    }

    #[test]
    fn a_mapped_certificate_stands_in_for_a_missing_key() {
        let roles = CertificateRoles::parse(&["node.modelplane.test=viewer"]).expect("rules");
        let layer = AuthLayer::new(Arc::new(OneKey), None, 0).with_certificate_roles(roles);
        let issue = |name: &str| {
            let key = rcgen::KeyPair::generate().expect("key");
            let params = rcgen::CertificateParams::new(vec![name.to_owned()]).expect("params");
            vec![params.self_signed(&key).expect("certificate").der().clone()]
        };
        let (node, other) = (issue("node.modelplane.test"), issue("other.modelplane.test"));
        let list = "/modelplane.registry.v1.Registry/ListModels";
        let caller = layer.admit(list, None, None, Some(&node)).expect("a viewer lists").expect("a caller");
        assert_eq!((caller.name.as_str(), caller.role), ("cert:node.modelplane.test", Role::Viewer));
        let refused = layer.admit(SET_ALIAS, None, None, Some(&node)).expect_err("a viewer flips nothing");
        assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{}", refused.message());
        assert!(refused.message().contains("viewer"), "{}", refused.message());
        let refused = layer.admit(list, None, None, Some(&other)).expect_err("unmapped");
        assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{}", refused.message());
        let key = format!("Bearer mpk_{ID}_{SECRET}");
        let caller = layer.admit(INFER, Some(key.as_bytes()), None, Some(&node)).expect("key").expect("caller");
        assert_eq!(caller.role, Role::Predictor, "a key sent says who calls, not the certificate");
        let wrong = format!("Bearer mpk_{ID}_{}", "1".repeat(64));
        let refused = layer.admit(list, Some(wrong.as_bytes()), None, Some(&node)).expect_err("a bad key");
        assert_eq!(refused.code(), tonic::Code::Unauthenticated, "a bad key is not covered by a certificate");
    }

    #[test]
    fn scoped_callers_see_their_models_only() {
        let caller = Caller { name: "ci".into(), role: Role::Predictor, model_prefix: "team-a/".into() };
        assert!(caller.may_use_model("team-a/churn") && !caller.may_use_model("team-b/churn"));
    }
}
