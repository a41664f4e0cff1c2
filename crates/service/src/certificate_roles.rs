//! Roles for mTLS client certificates (`--mtls-role NAME=ROLE`): a caller that presents no
//! API key but a client certificate — already verified against `--tls-client-ca` at the
//! handshake — acts with the role its certificate's name maps to. The names are the
//! certificate's DNS subject alternative names (what cert-manager and most internal CAs
//! issue) and URI names (SPIFFE IDs, as Istio and SPIRE issue); a pattern `*.SUFFIX`
//! matches any DNS name under `SUFFIX`. The subject's common name is not used: it is
//! deprecated for names and not constrained by name constraints.

use rustls::pki_types::CertificateDer;

use crate::access::Role;

/// The mapping from certificate names to roles; empty: certificates grant nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CertificateRoles {
    /// In flag order; the first pattern that matches one of the certificate's names wins.
    rules: Vec<(NamePattern, Role)>,
}

/// One side of a `NAME=ROLE` rule.
#[derive(Clone, Debug, PartialEq, Eq)]
enum NamePattern {
    /// The whole name (DNS names compared without regard to case).
    Exact(String),
    /// `*.SUFFIX`: any DNS name ending in `.SUFFIX` (one or more labels before it).
    Under(String),
}

impl NamePattern {
    fn matches_dns(&self, name: &str) -> bool {
        match self {
            NamePattern::Exact(exact) => exact.eq_ignore_ascii_case(name),
            NamePattern::Under(suffix) => {
                name.len() > suffix.len() + 1
                    && name.is_char_boundary(name.len() - suffix.len() - 1)
                    && name[name.len() - suffix.len() - 1..].eq_ignore_ascii_case(&format!(".{suffix}"))
            }
        }
    }

    fn matches_uri(&self, uri: &str) -> bool {
        matches!(self, NamePattern::Exact(exact) if exact == uri)
    }
}

impl CertificateRoles {
    /// Parses `NAME=ROLE` rules; the error names the rule and what was expected.
    pub fn parse<S: AsRef<str>>(rules: &[S]) -> Result<Self, String> {
        let mut parsed = Vec::with_capacity(rules.len());
        for rule in rules {
            let rule = rule.as_ref();
            let (name, role) = rule.rsplit_once('=').ok_or_else(|| {
                format!("--mtls-role {rule:?}: expected NAME=ROLE, e.g. worker.modelplane.svc=worker")
            })?;
            let role = Role::parse(role.trim()).map_err(|err| format!("--mtls-role {rule:?}: {err}"))?;
            let name = name.trim();
            let pattern = match name.strip_prefix("*.") {
                Some(suffix) if !suffix.is_empty() && !suffix.contains('*') => NamePattern::Under(suffix.to_owned()),
                _ if name.is_empty() || name.contains('*') => {
                    return Err(format!(
                        "--mtls-role {rule:?}: the name must be a DNS name, `*.` and a DNS suffix, or a URI"
                    ));
                }
                _ => NamePattern::Exact(name.to_owned()),
            };
            parsed.push((pattern, role));
        }
        Ok(Self { rules: parsed })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The name and role of a caller presenting `chain` (its own certificate first), if a
    /// rule maps one of its names. A certificate that does not parse maps to nothing.
    pub fn role_of(&self, chain: &[CertificateDer<'_>]) -> Option<(String, Role)> {
        if self.rules.is_empty() {
            return None;
        }
        let own = webpki::EndEntityCert::try_from(chain.first()?).ok()?;
        let dns: Vec<&str> = own.valid_dns_names().collect();
        let uris: Vec<&str> = own.valid_uri_names().collect();
        self.rules.iter().find_map(|(pattern, role)| {
            let name = dns
                .iter()
                .find(|name| pattern.matches_dns(name))
                .or_else(|| uris.iter().find(|uri| pattern.matches_uri(uri)))?;
            Some(((*name).to_owned(), *role))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certificate(dns: &[&str], uri: Option<&str>) -> CertificateDer<'static> {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(dns.iter().map(|name| (*name).to_owned()).collect::<Vec<_>>())
            .expect("params");
        if let Some(uri) = uri {
            params.subject_alt_names.push(rcgen::SanType::URI(uri.try_into().expect("uri")));
        }
        params.self_signed(&key).expect("certificate").der().clone()
    }

    #[test]
    fn names_map_to_roles_in_rule_order() {
        let roles = CertificateRoles::parse(&[
            "registry.modelplane.svc=service",
            "*.workers.modelplane.svc=worker",
            "spiffe://cluster.local/ns/ml/sa/trainer=service",
            "*.modelplane.svc=viewer",
        ])
        .expect("rules");
        let role = |dns: &[&str], uri: Option<&str>| roles.role_of(&[certificate(dns, uri)]);
        assert_eq!(
            role(&["worker-0.workers.modelplane.svc"], None),
            Some(("worker-0.workers.modelplane.svc".into(), Role::Worker))
        );
        assert_eq!(role(&["Registry.Modelplane.svc"], None), Some(("Registry.Modelplane.svc".into(), Role::Service)));
        assert_eq!(role(&["other.modelplane.svc"], None), Some(("other.modelplane.svc".into(), Role::Viewer)));
        assert_eq!(role(&["workers.modelplane.svc.evil.example"], None), None, "a suffix is not a prefix");
        assert_eq!(role(&["xworkers.modelplane.svc"], None).map(|(_, role)| role), Some(Role::Viewer));
        let spiffe = "spiffe://cluster.local/ns/ml/sa/trainer";
        assert_eq!(role(&[], Some(spiffe)), Some((spiffe.into(), Role::Service)));
        assert_eq!(role(&["localhost"], None), None, "unmapped names grant nothing");
        assert_eq!(CertificateRoles::default().role_of(&[certificate(&["registry.modelplane.svc"], None)]), None);
        assert_eq!(roles.role_of(&[CertificateDer::from(vec![1, 2, 3])]), None, "garbage maps to nothing");
        assert_eq!(roles.role_of(&[]), None);
    }

    #[test]
    fn bad_rules_say_what_was_expected() {
        for (rule, expected) in [
            ("worker", "expected NAME=ROLE"),
            ("worker=root", "unknown role \"root\""),
            ("=worker", "the name must be"),
            ("a.*.b=worker", "the name must be"),
            ("*.=worker", "the name must be"),
        ] {
            let err = CertificateRoles::parse(&[rule]).expect_err(rule);
            assert!(err.contains(expected) && err.contains(rule), "{rule}: {err}");
        }
    }
}
