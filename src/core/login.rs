//! What `CrmSync.open` and `logout` decide before an engine exists or
//! after it is gone: whether `open` starts with the server's word or
//! offline, and what a logout deletes. The facade (`api/client`) asks
//! the server and IndexedDB and does what these say.

/// How long a logout waits for the user's database to be deleted (other
/// tabs close their connections first).
pub const DELETE_WAIT_MS: u32 = 5_000;

/// What `GET /api/me` said to `open`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Me {
    /// The token's user.
    User(String),
    /// No answer, or a transient failure (network, timeout, 5xx, 429).
    Unreachable,
}

/// How `open` goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Open {
    /// With `user`; `verified` when the server confirmed the token's user
    /// (a client opened offline with a user the app named is not, and
    /// probes the server before it reads or sends anything).
    As {
        /// The user.
        user: String,
        /// The server confirmed it.
        verified: bool,
    },
    /// The token is another user's than the one the app named: refused
    /// as `unauthorized`.
    NotNamed {
        /// Whose token it is.
        token_user: String,
    },
    /// The server cannot be reached and the app named no user: fails
    /// with the request's error.
    Failed,
}

/// `open`'s decision from the server's answer and the user the app
/// named (if any, not empty).
pub fn open_as(me: Me, named: Option<&str>) -> Open {
    match (me, named) {
        (Me::User(user), Some(named)) if user != named => Open::NotNamed { token_user: user },
        (Me::User(user), _) => Open::As {
            user,
            verified: true,
        },
        (Me::Unreachable, Some(named)) => Open::As {
            user: named.to_owned(),
            verified: false,
        },
        (Me::Unreachable, None) => Open::Failed,
    }
}

/// Whether the user's database holds work not on the server, from the
/// number of entries of each of its stores of work (outbox, dead letters,
/// conflicts); `None` when the database could not be read, which counts
/// as holding some: it is not deleted on a guess.
pub fn holds_work(entries: Option<&[usize]>) -> bool {
    entries.is_none_or(|counts| counts.iter().any(|&n| n > 0))
}

/// Whether a logout deletes the user's data: with `discard`, or when no
/// work is left in it (another tab may have queued some while the token
/// was revoked; then it stays for the user's next login).
pub fn logout_deletes(discard: bool, holds_work: bool) -> bool {
    discard || !holds_work
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_trusts_the_server_and_falls_back_to_the_named_user_only_offline() {
        let me = |u: &str| Me::User(u.to_owned());
        let as_ = |u: &str, verified| Open::As {
            user: u.to_owned(),
            verified,
        };
        assert_eq!(open_as(me("alice"), None), as_("alice", true));
        assert_eq!(open_as(me("alice"), Some("alice")), as_("alice", true));
        assert_eq!(
            open_as(me("bob"), Some("alice")),
            Open::NotNamed {
                token_user: "bob".into()
            }
        );
        assert_eq!(open_as(Me::Unreachable, Some("alice")), as_("alice", false));
        assert_eq!(open_as(Me::Unreachable, None), Open::Failed);
    }

    #[test]
    fn a_logout_keeps_work_it_cannot_rule_out() {
        assert!(holds_work(None));
        assert!(holds_work(Some(&[0, 1, 0])));
        assert!(!holds_work(Some(&[0, 0, 0])));
        assert!(logout_deletes(true, true));
        assert!(logout_deletes(false, false));
        assert!(!logout_deletes(false, true));
    }
}
