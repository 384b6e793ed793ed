//! etcd's Auth service: enable / disable, authenticate, users, roles and
//! permissions (`concord::auth`). Management needs the root role once auth
//! is enabled (`authz`); Authenticate and AuthStatus need nothing.

use bytes::Bytes;
use concord::auth::{AuthCommand, AuthError, Caller, PermissionKind};
use concord::{Concord, KeyRange, RangeEnd};
use tonic::{Request, Response, Status};

use crate::header::current;
use crate::metrics::Metrics;
use crate::pb::authpb;
use crate::pb::etcdserverpb::{self as pb, auth_server::Auth};
use crate::status::to_status;

/// The gRPC service Auth: users, roles, permissions, tokens, and turning authentication on and off.
pub struct AuthService {
    db: Concord,
    metrics: Metrics,
}

impl AuthService {
    /// The service for `db`, recording its calls in `metrics`.
    pub fn new(db: Concord, metrics: Metrics) -> Self {
        AuthService { db, metrics }
    }

    /// Applies `command` if the caller may administer (checked here and
    /// again at apply); the header of the answer.
    async fn change<T>(&self, request: &Request<T>, command: AuthCommand) -> Result<pb::ResponseHeader, Status> {
        let caller = self.admin(request)?;
        self.db.auth_change_as(command, Some(caller)).await.map_err(to_status)?;
        Ok(current(&self.db))
    }

    /// The caller, if it may administer.
    fn admin<T>(&self, request: &Request<T>) -> Result<Caller, Status> {
        let caller = crate::authz::caller(&self.db, request)?;
        crate::authz::check_admin(&self.db, &caller)?;
        Ok(caller)
    }
}

/// A permission's range as etcd sends it: an empty end is one key, `\0`
/// every key from `key` on.
fn range_of(key: Bytes, range_end: Bytes) -> Result<KeyRange, Status> {
    crate::convert::key_range(key, range_end)
}

fn range_to_pb(range: &KeyRange) -> (Bytes, Bytes) {
    let end = match &range.end {
        RangeEnd::Single => Bytes::new(),
        RangeEnd::Unbounded => Bytes::from_static(b"\0"),
        RangeEnd::Exclusive(end) => end.clone(),
    };
    (range.start.clone(), end)
}

fn kind_from_pb(perm_type: i32) -> Result<PermissionKind, Status> {
    match authpb::permission::Type::try_from(perm_type) {
        Ok(authpb::permission::Type::Read) => Ok(PermissionKind::Read),
        Ok(authpb::permission::Type::Write) => Ok(PermissionKind::Write),
        Ok(authpb::permission::Type::Readwrite) => Ok(PermissionKind::ReadWrite),
        Err(_) => Err(Status::invalid_argument("etcdserver: invalid permission type")),
    }
}

fn kind_to_pb(kind: PermissionKind) -> i32 {
    match kind {
        PermissionKind::Read => authpb::permission::Type::Read as i32,
        PermissionKind::Write => authpb::permission::Type::Write as i32,
        PermissionKind::ReadWrite => authpb::permission::Type::Readwrite as i32,
    }
}

/// A password, or none for a user added with `--no-password`.
fn password(password: &str, no_password: bool) -> Option<&str> {
    (!no_password).then_some(password)
}

#[tonic::async_trait]
impl Auth for AuthService {
    async fn auth_enable(
        &self,
        request: Request<pb::AuthEnableRequest>,
    ) -> Result<Response<pb::AuthEnableResponse>, Status> {
        self.metrics
            .track("AuthEnable", true, async {
                let header = self.change(&request, AuthCommand::Enable).await?;
                Ok(Response::new(pb::AuthEnableResponse { header: Some(header) }))
            })
            .await
    }

    async fn auth_disable(
        &self,
        request: Request<pb::AuthDisableRequest>,
    ) -> Result<Response<pb::AuthDisableResponse>, Status> {
        self.metrics
            .track("AuthDisable", true, async {
                let header = self.change(&request, AuthCommand::Disable).await?;
                Ok(Response::new(pb::AuthDisableResponse { header: Some(header) }))
            })
            .await
    }

    async fn auth_status(
        &self,
        _request: Request<pb::AuthStatusRequest>,
    ) -> Result<Response<pb::AuthStatusResponse>, Status> {
        self.metrics
            .track("AuthStatus", false, async {
                let (enabled, auth_revision) = self.db.auth_status();
                Ok(Response::new(pb::AuthStatusResponse { header: Some(current(&self.db)), enabled, auth_revision }))
            })
            .await
    }

    async fn authenticate(
        &self,
        request: Request<pb::AuthenticateRequest>,
    ) -> Result<Response<pb::AuthenticateResponse>, Status> {
        self.metrics
            .track("Authenticate", false, async {
                let req = request.into_inner();
                let token = self.db.authenticate(&req.name, &req.password).await.map_err(to_status)?;
                Ok(Response::new(pb::AuthenticateResponse { header: Some(current(&self.db)), token }))
            })
            .await
    }

    async fn user_add(
        &self,
        request: Request<pb::AuthUserAddRequest>,
    ) -> Result<Response<pb::AuthUserAddResponse>, Status> {
        self.metrics
            .track("UserAdd", true, async {
                let caller = self.admin(&request)?;
                let req = request.into_inner();
                let no_password = req.options.is_some_and(|o| o.no_password);
                let password = password(&req.password, no_password);
                self.db.user_add_as(&req.name, password, Some(caller)).await.map_err(to_status)?;
                Ok(Response::new(pb::AuthUserAddResponse { header: Some(current(&self.db)) }))
            })
            .await
    }

    async fn user_get(
        &self,
        request: Request<pb::AuthUserGetRequest>,
    ) -> Result<Response<pb::AuthUserGetResponse>, Status> {
        self.metrics
            .track("UserGet", false, async {
                self.admin(&request)?;
                let name = request.into_inner().name;
                let store = self.db.auth_store();
                let user = store.users.get(&name).ok_or_else(|| to_status(AuthError::UserNotFound.into()))?;
                let roles = user.roles.iter().cloned().collect();
                Ok(Response::new(pb::AuthUserGetResponse { header: Some(current(&self.db)), roles }))
            })
            .await
    }

    async fn user_list(
        &self,
        request: Request<pb::AuthUserListRequest>,
    ) -> Result<Response<pb::AuthUserListResponse>, Status> {
        self.metrics
            .track("UserList", false, async {
                self.admin(&request)?;
                let users = self.db.auth_store().users.into_keys().collect();
                Ok(Response::new(pb::AuthUserListResponse { header: Some(current(&self.db)), users }))
            })
            .await
    }

    async fn user_delete(
        &self,
        request: Request<pb::AuthUserDeleteRequest>,
    ) -> Result<Response<pb::AuthUserDeleteResponse>, Status> {
        self.metrics
            .track("UserDelete", true, async {
                let name = request.get_ref().name.clone();
                let header = self.change(&request, AuthCommand::UserDelete { name }).await?;
                Ok(Response::new(pb::AuthUserDeleteResponse { header: Some(header) }))
            })
            .await
    }

    async fn user_change_password(
        &self,
        request: Request<pb::AuthUserChangePasswordRequest>,
    ) -> Result<Response<pb::AuthUserChangePasswordResponse>, Status> {
        self.metrics
            .track("UserChangePassword", true, async {
                let caller = self.admin(&request)?;
                let req = request.into_inner();
                let changed = self.db.user_change_password_as(&req.name, Some(&req.password), Some(caller));
                changed.await.map_err(to_status)?;
                Ok(Response::new(pb::AuthUserChangePasswordResponse { header: Some(current(&self.db)) }))
            })
            .await
    }

    async fn user_grant_role(
        &self,
        request: Request<pb::AuthUserGrantRoleRequest>,
    ) -> Result<Response<pb::AuthUserGrantRoleResponse>, Status> {
        self.metrics
            .track("UserGrantRole", true, async {
                let req = request.get_ref().clone();
                let header =
                    self.change(&request, AuthCommand::UserGrantRole { user: req.user, role: req.role }).await?;
                Ok(Response::new(pb::AuthUserGrantRoleResponse { header: Some(header) }))
            })
            .await
    }

    async fn user_revoke_role(
        &self,
        request: Request<pb::AuthUserRevokeRoleRequest>,
    ) -> Result<Response<pb::AuthUserRevokeRoleResponse>, Status> {
        self.metrics
            .track("UserRevokeRole", true, async {
                let req = request.get_ref().clone();
                let header =
                    self.change(&request, AuthCommand::UserRevokeRole { user: req.name, role: req.role }).await?;
                Ok(Response::new(pb::AuthUserRevokeRoleResponse { header: Some(header) }))
            })
            .await
    }

    async fn role_add(
        &self,
        request: Request<pb::AuthRoleAddRequest>,
    ) -> Result<Response<pb::AuthRoleAddResponse>, Status> {
        self.metrics
            .track("RoleAdd", true, async {
                let name = request.get_ref().name.clone();
                let header = self.change(&request, AuthCommand::RoleAdd { name }).await?;
                Ok(Response::new(pb::AuthRoleAddResponse { header: Some(header) }))
            })
            .await
    }

    async fn role_get(
        &self,
        request: Request<pb::AuthRoleGetRequest>,
    ) -> Result<Response<pb::AuthRoleGetResponse>, Status> {
        self.metrics
            .track("RoleGet", false, async {
                self.admin(&request)?;
                let name = request.into_inner().role;
                let store = self.db.auth_store();
                let perm = match store.roles.get(&name) {
                    Some(role) => role
                        .permissions
                        .iter()
                        .map(|p| {
                            let (key, range_end) = range_to_pb(&p.range);
                            authpb::Permission { perm_type: kind_to_pb(p.kind), key, range_end }
                        })
                        .collect(),
                    // The root role may be granted without being added.
                    None if name == concord::auth::ROOT => Vec::new(),
                    None => return Err(to_status(AuthError::RoleNotFound.into())),
                };
                Ok(Response::new(pb::AuthRoleGetResponse { header: Some(current(&self.db)), perm }))
            })
            .await
    }

    async fn role_list(
        &self,
        request: Request<pb::AuthRoleListRequest>,
    ) -> Result<Response<pb::AuthRoleListResponse>, Status> {
        self.metrics
            .track("RoleList", false, async {
                self.admin(&request)?;
                let roles = self.db.auth_store().roles.into_keys().collect();
                Ok(Response::new(pb::AuthRoleListResponse { header: Some(current(&self.db)), roles }))
            })
            .await
    }

    async fn role_delete(
        &self,
        request: Request<pb::AuthRoleDeleteRequest>,
    ) -> Result<Response<pb::AuthRoleDeleteResponse>, Status> {
        self.metrics
            .track("RoleDelete", true, async {
                let name = request.get_ref().role.clone();
                let header = self.change(&request, AuthCommand::RoleDelete { name }).await?;
                Ok(Response::new(pb::AuthRoleDeleteResponse { header: Some(header) }))
            })
            .await
    }

    async fn role_grant_permission(
        &self,
        request: Request<pb::AuthRoleGrantPermissionRequest>,
    ) -> Result<Response<pb::AuthRoleGrantPermissionResponse>, Status> {
        self.metrics
            .track("RoleGrantPermission", true, async {
                let req = request.get_ref().clone();
                let perm = req.perm.ok_or_else(|| Status::invalid_argument("etcdserver: permission not given"))?;
                let permission = concord::auth::Permission {
                    kind: kind_from_pb(perm.perm_type)?,
                    range: range_of(perm.key, perm.range_end)?,
                };
                let header =
                    self.change(&request, AuthCommand::RoleGrantPermission { role: req.name, permission }).await?;
                Ok(Response::new(pb::AuthRoleGrantPermissionResponse { header: Some(header) }))
            })
            .await
    }

    async fn role_revoke_permission(
        &self,
        request: Request<pb::AuthRoleRevokePermissionRequest>,
    ) -> Result<Response<pb::AuthRoleRevokePermissionResponse>, Status> {
        self.metrics
            .track("RoleRevokePermission", true, async {
                let req = request.get_ref().clone();
                let range = range_of(req.key, req.range_end)?;
                let header = self.change(&request, AuthCommand::RoleRevokePermission { role: req.role, range }).await?;
                Ok(Response::new(pb::AuthRoleRevokePermissionResponse { header: Some(header) }))
            })
            .await
    }
}
