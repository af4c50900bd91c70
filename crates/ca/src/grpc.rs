//! The gRPC side: `twill.ca.CertificateAuthority` (see
//! `proto/twill/ca.proto`), for Twill's own tools.
//!
//! Every RPC converts its protobuf request into the [`crate::api`] request
//! and calls the same [`Ca`] operation the REST endpoint calls, so the
//! rules and error codes are the same. Calls other than `GetCAInfo` and
//! `Enroll` take a [`SignedRequest`], checked by [`Ca::authenticate`] with
//! the REST token message built over the gRPC method path
//! ([`signed_message`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use tonic::{Code, Request, Response, Status};
use twill_protos::twill::ca as pb;
use twill_protos::twill::ca::certificate_authority_server::CertificateAuthority;

pub use twill_protos::twill::ca::certificate_authority_server::CertificateAuthorityServer;
pub use twill_protos::twill::ca::SignedRequest;

use crate::api::{self, authorization_token};
use crate::error::{codes, CaError, CaResult};
use crate::service::{Ca, Caller};

const LOG: &str = "ca::grpc";

/// gRPC path prefix of the service's methods.
pub const SERVICE_PATH: &str = "/twill.ca.CertificateAuthority/";

/// The message a [`SignedRequest`] signature covers for method `rpc`
/// (e.g. `"Register"`): the REST token message
/// ([`api::token_message`]) with method `POST` and the gRPC method path as
/// the URI.
pub fn signed_message(rpc: &str, request: &[u8], cert_pem: &[u8]) -> String {
    api::token_message("POST", &format!("{SERVICE_PATH}{rpc}"), request, cert_pem)
}

/// The gRPC code for a CA error.
fn grpc_code(e: &CaError) -> Code {
    match e {
        CaError::Authentication { .. } => Code::Unauthenticated,
        CaError::Authorization { .. } => Code::PermissionDenied,
        CaError::BadRequest { .. } => Code::InvalidArgument,
        CaError::BadCsr { status, .. } if *status < 500 => Code::InvalidArgument,
        CaError::NotFound { .. } => Code::NotFound,
        CaError::Conflict { .. } => Code::AlreadyExists,
        CaError::MethodNotAllowed { .. } => Code::Unimplemented,
        CaError::BadCsr { .. }
        | CaError::Db(_)
        | CaError::Io { .. }
        | CaError::Cert(_)
        | CaError::Corrupt { .. }
        | CaError::Config(_) => Code::Internal,
    }
}

/// A CA error as a gRPC status: `code <Fabric CA code>: <client message>`.
pub fn to_status(e: &CaError) -> Status {
    let code = grpc_code(e);
    if code == Code::Internal {
        tracing::error!(target: LOG, error = %e, "request failed");
    } else {
        tracing::debug!(target: LOG, error = %e, "request refused");
    }
    Status::new(code, format!("code {}: {}", e.code(), e.client_message()))
}

/// Parses a status made by [`to_status`] back into the Fabric CA code and
/// message (for clients).
pub fn parse_status(status: &Status) -> Option<(i64, &str)> {
    let rest = status.message().strip_prefix("code ")?;
    let (code, message) = rest.split_once(": ")?;
    Some((code.parse().ok()?, message))
}

fn unb64(s: &str) -> CaResult<Vec<u8>> {
    B64.decode(s)
        .map_err(|e| CaError::Cert(format!("internal base64: {e}")))
}

fn opt(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

fn attr_reqs(reqs: Vec<pb::AttributeRequest>) -> Option<Vec<api::AttributeRequest>> {
    (!reqs.is_empty()).then(|| {
        reqs.into_iter()
            .map(|r| api::AttributeRequest {
                name: r.name,
                optional: r.optional,
            })
            .collect()
    })
}

fn attrs_in(attrs: Vec<pb::Attribute>) -> Vec<api::Attribute> {
    attrs
        .into_iter()
        .map(|a| api::Attribute {
            name: a.name,
            value: a.value,
            ecert: a.ecert,
        })
        .collect()
}

fn identity_out(i: api::IdentityInfo, ca_name: &str) -> pb::Identity {
    pb::Identity {
        id: i.id,
        r#type: i.id_type,
        affiliation: i.affiliation,
        attrs: i
            .attrs
            .into_iter()
            .map(|a| pb::Attribute {
                name: a.name,
                value: a.value,
                ecert: a.ecert,
            })
            .collect(),
        max_enrollments: i.max_enrollments,
        ca_name: ca_name.to_string(),
    }
}

fn ca_info_out(i: api::CaInfo) -> CaResult<pb::CaInfo> {
    Ok(pb::CaInfo {
        ca_chain: unb64(&i.ca_chain)?,
        ca_name: i.ca_name,
        version: i.version,
    })
}

fn enroll_out(r: api::EnrollResponse) -> CaResult<pb::EnrollResponse> {
    Ok(pb::EnrollResponse {
        certificate: unb64(&r.cert)?,
        ca_info: Some(ca_info_out(r.server_info)?),
    })
}

/// The gRPC service over a [`Ca`].
#[derive(Debug, Clone)]
pub struct GrpcCa {
    ca: Arc<Ca>,
}

impl GrpcCa {
    /// Serves `ca`.
    pub fn new(ca: Arc<Ca>) -> Self {
        Self { ca }
    }

    /// The tonic service to add to a server.
    pub fn into_server(self) -> CertificateAuthorityServer<Self> {
        CertificateAuthorityServer::new(self)
    }

    /// Runs `f` on the blocking pool (registry and signing work).
    async fn blocking<T, F>(&self, f: F) -> Result<Response<T>, Status>
    where
        T: Send + 'static,
        F: FnOnce(&Ca) -> CaResult<T> + Send + 'static,
    {
        let ca = self.ca.clone();
        match tokio::task::spawn_blocking(move || f(&ca)).await {
            Ok(Ok(v)) => Ok(Response::new(v)),
            Ok(Err(e)) => Err(to_status(&e)),
            Err(e) => Err(Status::internal(format!("code 0: task failed: {e}"))),
        }
    }

    /// Authenticates a [`SignedRequest`] for `rpc`, decodes its request,
    /// checks its CA name and runs `f` with the caller.
    async fn signed<R, T, F>(
        &self,
        rpc: &'static str,
        req: Request<SignedRequest>,
        ca_name: fn(&R) -> &str,
        f: F,
    ) -> Result<Response<T>, Status>
    where
        R: prost::Message + Default + 'static,
        T: Send + 'static,
        F: FnOnce(&Ca, &Caller, R) -> CaResult<T> + Send + 'static,
    {
        let signed = req.into_inner();
        self.blocking(move |ca| {
            let token = authorization_token(&signed.certificate, &signed.signature);
            let caller = ca.authenticate(
                "POST",
                &format!("{SERVICE_PATH}{rpc}"),
                &signed.request,
                Some(&token),
            )?;
            let inner = R::decode(signed.request.as_slice()).map_err(|e| {
                CaError::bad(
                    codes::BAD_REQUEST_BODY,
                    format!("Invalid {rpc} request: {e}"),
                )
            })?;
            ca.check_ca_name(Some(ca_name(&inner)))?;
            tracing::debug!(target: LOG, rpc, caller = %caller.identity.id, "signed request");
            f(ca, &caller, inner)
        })
        .await
    }
}

#[tonic::async_trait]
impl CertificateAuthority for GrpcCa {
    async fn get_ca_info(
        &self,
        req: Request<pb::GetCaInfoRequest>,
    ) -> Result<Response<pb::CaInfo>, Status> {
        let r = req.into_inner();
        self.blocking(move |ca| {
            ca.check_ca_name(Some(&r.ca_name))?;
            ca_info_out(ca.cainfo())
        })
        .await
    }

    async fn enroll(
        &self,
        req: Request<pb::EnrollRequest>,
    ) -> Result<Response<pb::EnrollResponse>, Status> {
        let r = req.into_inner();
        self.blocking(move |ca| {
            ca.check_ca_name(Some(&r.ca_name))?;
            let api_req = api::EnrollRequest {
                certificate_request: r.csr,
                profile: opt(r.profile),
                attr_reqs: attr_reqs(r.attr_reqs),
                caname: opt(r.ca_name),
            };
            enroll_out(ca.enroll(&r.enrollment_id, &r.secret, &api_req)?)
        })
        .await
    }

    async fn reenroll(
        &self,
        req: Request<SignedRequest>,
    ) -> Result<Response<pb::EnrollResponse>, Status> {
        self.signed(
            "Reenroll",
            req,
            |r: &pb::ReenrollRequest| &r.ca_name,
            |ca, caller, r| {
                let api_req = api::EnrollRequest {
                    certificate_request: r.csr,
                    profile: opt(r.profile),
                    attr_reqs: attr_reqs(r.attr_reqs),
                    caname: opt(r.ca_name),
                };
                enroll_out(ca.reenroll(caller, &api_req)?)
            },
        )
        .await
    }

    async fn register(
        &self,
        req: Request<SignedRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        self.signed(
            "Register",
            req,
            |r: &pb::RegisterRequest| &r.ca_name,
            |ca, caller, r| {
                let api_req = api::RegisterRequest {
                    id: r.id,
                    id_type: opt(r.r#type),
                    secret: opt(r.secret),
                    max_enrollments: r.max_enrollments,
                    affiliation: opt(r.affiliation),
                    attrs: attrs_in(r.attrs),
                    caname: opt(r.ca_name),
                };
                let out = ca.register(caller, &api_req)?;
                Ok(pb::RegisterResponse { secret: out.secret })
            },
        )
        .await
    }

    async fn revoke(
        &self,
        req: Request<SignedRequest>,
    ) -> Result<Response<pb::RevokeResponse>, Status> {
        self.signed(
            "Revoke",
            req,
            |r: &pb::RevokeRequest| &r.ca_name,
            |ca, caller, r| {
                let api_req = api::RevokeRequest {
                    id: opt(r.id),
                    aki: opt(r.aki),
                    serial: opt(r.serial),
                    reason: opt(r.reason),
                    gencrl: r.gen_crl,
                    caname: opt(r.ca_name),
                };
                let out = ca.revoke(caller, &api_req)?;
                Ok(pb::RevokeResponse {
                    revoked: out
                        .revoked_certs
                        .into_iter()
                        .map(|c| pb::RevokedCertificate {
                            serial: c.serial,
                            aki: c.aki,
                        })
                        .collect(),
                    crl: unb64(&out.crl)?,
                })
            },
        )
        .await
    }

    async fn gen_crl(
        &self,
        req: Request<SignedRequest>,
    ) -> Result<Response<pb::GenCrlResponse>, Status> {
        self.signed(
            "GenCRL",
            req,
            |r: &pb::GenCrlRequest| &r.ca_name,
            |ca, caller, r| {
                let api_req = api::GenCrlRequest {
                    revoked_before: opt(r.revoked_before),
                    revoked_after: opt(r.revoked_after),
                    expire_before: opt(r.expire_before),
                    expire_after: opt(r.expire_after),
                    caname: opt(r.ca_name),
                };
                let out = ca.gencrl(caller, &api_req)?;
                Ok(pb::GenCrlResponse {
                    crl: unb64(&out.crl)?,
                })
            },
        )
        .await
    }

    async fn list_identities(
        &self,
        req: Request<SignedRequest>,
    ) -> Result<Response<pb::ListIdentitiesResponse>, Status> {
        self.signed(
            "ListIdentities",
            req,
            |r: &pb::ListIdentitiesRequest| &r.ca_name,
            |ca, caller, _r| {
                let out = ca.list_identities(caller)?;
                Ok(pb::ListIdentitiesResponse {
                    identities: out
                        .identities
                        .into_iter()
                        .map(|i| identity_out(i, &out.caname))
                        .collect(),
                    ca_name: out.caname,
                })
            },
        )
        .await
    }

    async fn get_identity(
        &self,
        req: Request<SignedRequest>,
    ) -> Result<Response<pb::Identity>, Status> {
        self.signed(
            "GetIdentity",
            req,
            |r: &pb::GetIdentityRequest| &r.ca_name,
            |ca, caller, r| {
                let out = ca.get_identity(caller, &r.id)?;
                Ok(identity_out(out.identity, &out.caname))
            },
        )
        .await
    }

    async fn remove_identity(
        &self,
        req: Request<SignedRequest>,
    ) -> Result<Response<pb::Identity>, Status> {
        self.signed(
            "RemoveIdentity",
            req,
            |r: &pb::RemoveIdentityRequest| &r.ca_name,
            |ca, caller, r| {
                let out = ca.delete_identity(caller, &r.id)?;
                Ok(identity_out(out.identity, &out.caname))
            },
        )
        .await
    }

    async fn list_certificates(
        &self,
        req: Request<SignedRequest>,
    ) -> Result<Response<pb::ListCertificatesResponse>, Status> {
        self.signed(
            "ListCertificates",
            req,
            |r: &pb::ListCertificatesRequest| &r.ca_name,
            |ca, caller, r| {
                let mut q = BTreeMap::new();
                let flag = |b: bool| if b { "true" } else { "false" }.to_string();
                for (k, v) in [
                    ("id", r.id),
                    ("serial", r.serial),
                    ("aki", r.aki),
                    ("notrevoked", flag(r.not_revoked)),
                    ("notexpired", flag(r.not_expired)),
                    ("revoked_start", r.revoked_start),
                    ("revoked_end", r.revoked_end),
                    ("expired_start", r.expired_start),
                    ("expired_end", r.expired_end),
                ] {
                    if !v.is_empty() {
                        q.insert(k.to_string(), v);
                    }
                }
                let out = ca.certificates(caller, &q)?;
                Ok(pb::ListCertificatesResponse {
                    certificates: out.certs.into_iter().map(|c| c.pem.into_bytes()).collect(),
                    ca_name: out.caname,
                })
            },
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_carries_the_fabric_code() {
        let s = to_status(&CaError::authn("bad signature"));
        assert_eq!(s.code(), Code::Unauthenticated);
        assert_eq!(s.message(), "code 20: Authentication failure");
        assert_eq!(parse_status(&s), Some((20, "Authentication failure")));
        let s = to_status(&CaError::authz("no"));
        assert_eq!(s.code(), Code::PermissionDenied);
        assert_eq!(parse_status(&s), Some((71, "Authorization failure")));
    }
}
