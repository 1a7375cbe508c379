//! Who may do what: the roles a caller holds, what each route needs, and the API tokens people
//! hold on the TCP listener. On the owner-only unix socket the caller is the OS user the kernel
//! names (peer credentials) — or the holder of the token it presents; on TCP it is always a
//! token's holder. The role is checked by the server before a handler reads anything.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A caller's role. Each allows a set of [`Permission`]s; `admin` allows every one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads state: status, rollouts, the ledger, backups, incidents.
    Viewer,
    /// Reads, and changes the stack: deploy, restart, reload, secrets, config, backups,
    /// silences, incidents, runbooks.
    Operator,
    /// Reads, and approves or rejects what waits for approval (deploys, runbook steps).
    Approver,
    /// Everything, including tokens.
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Operator, Role::Approver, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Approver => "approver",
            Role::Admin => "admin",
        }
    }

    /// Whether this role may do what `permission` guards.
    pub fn allows(self, permission: Permission) -> bool {
        matches!(
            (self, permission),
            (Role::Admin, _)
                | (_, Permission::Read)
                | (Role::Operator, Permission::Operate)
                | (Role::Approver, Permission::Approve)
        )
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(text: &str) -> Result<Role, String> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == text)
            .ok_or_else(|| format!("`{text}` is not a role: viewer, operator, approver or admin"))
    }
}

/// What a route needs of its caller's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    /// Reading state.
    Read,
    /// Changing the stack.
    Operate,
    /// Approving or rejecting a request that waits (four-eyes).
    Approve,
    /// Managing identities (tokens), revealing secrets.
    Admin,
}

/// Who called, as the server established it; every ledger entry of the request names `name`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Caller {
    /// The identity: the OS user (`root@host`) on the unix socket, a token's name on TCP.
    #[schema(example = "alice")]
    pub name: String,
    pub role: Role,
    /// How it was established: `peer_credentials` or `token`.
    #[schema(example = "token")]
    pub via: String,
    /// For a token: who made it. Four-eyes refuses an approval through a token the requester
    /// made (an admin cannot approve their own change under a name they invented).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vouched_by: Option<String>,
}

/// `POST /v1/tokens`: a new API token for one person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenRequest {
    /// The holder's identity, as the ledger will name them: lowercase letters, digits, `.`,
    /// `_` and `-`, at most 64 characters; unique among tokens in force.
    #[schema(example = "alice")]
    pub name: String,
    pub role: Role,
    /// How long it is valid (`90d`, `12h`); at most 400 days. Default 90 days.
    #[serde(default)]
    #[schema(example = "30d")]
    pub expires_in: Option<String>,
}

/// A token as listed: never its secret, which exists only in the answer that created it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenInfo {
    #[schema(example = "t-3")]
    pub id: String,
    #[schema(example = "alice")]
    pub name: String,
    pub role: Role,
    pub created_by: String,
    pub created_at: String,
    pub expires_at: String,
    pub revoked_at: Option<String>,
    pub revoked_by: Option<String>,
}

/// The answer to `POST /v1/tokens`: the token, shown this once (only its hash is kept).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CreatedToken {
    pub info: TokenInfo,
    /// `Authorization: Bearer <token>`.
    pub token: String,
}

/// `GET /v1/tokens`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenList {
    pub tokens: Vec<TokenInfo>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_allow_what_their_names_say() {
        use Permission::*;
        let table = [
            (Role::Viewer, [true, false, false, false]),
            (Role::Operator, [true, true, false, false]),
            (Role::Approver, [true, false, true, false]),
            (Role::Admin, [true, true, true, true]),
        ];
        for (role, allowed) in table {
            for (permission, expected) in [Read, Operate, Approve, Admin].into_iter().zip(allowed) {
                assert_eq!(role.allows(permission), expected, "{role} {permission:?}");
            }
        }
    }

    #[test]
    fn roles_read_their_wire_names() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
            assert_eq!(serde_json::to_value(role).unwrap(), role.as_str());
        }
        assert!("root".parse::<Role>().unwrap_err().contains("viewer"));
    }
}
