//! The Zoom users of an app: its own user (from the app spec) and up to
//! [`MAX_USERS_PER_APP`] more registered by tests, and which of them consents when an
//! authorization request does not say (`login_hint`).

use super::{Sim, User, MAX_USERS_PER_APP};

/// Why a user could not be registered or chosen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UserError {
    UnknownApp,
    /// Server-to-Server apps act as the account owner; no user authorizes them.
    NotAnOauthApp,
    /// The user id or email is taken within the app (→ 409).
    Duplicate(String),
    /// The app has [`MAX_USERS_PER_APP`] users besides its own.
    Full,
    /// No user of the app has that id or email.
    UnknownUser(String),
}

impl std::fmt::Display for UserError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UserError::UnknownApp => f.write_str("No app with that client_id."),
            UserError::NotAnOauthApp => f.write_str(
                "This is a Server-to-Server app: it acts as the account owner and has no users to register.",
            ),
            UserError::Duplicate(what) => write!(f, "The app already has a user with {what}."),
            UserError::Full => write!(
                f,
                "The app already has {MAX_USERS_PER_APP} users besides its own; zoom-sim keeps no more."
            ),
            UserError::UnknownUser(key) => {
                let shown: String = key.chars().take(128).collect();
                write!(f, "The app has no user with id or email {shown:?}.")
            }
        }
    }
}

impl Sim {
    /// Every user of the app, its own first, then in registration order.
    pub fn users(&self, client_id: &str) -> Option<Vec<User>> {
        let app = self.apps.get(client_id)?;
        let mut all = vec![app.own_user()];
        all.extend(self.users.get(client_id).into_iter().flatten().cloned());
        Some(all)
    }

    /// How many users were registered for the app besides its own (for numbering defaults).
    pub fn registered_user_count(&self, client_id: &str) -> usize {
        self.users.get(client_id).map_or(0, Vec::len)
    }

    /// Registers one more user for an OAuth app; ids and emails are unique within the app.
    pub fn add_user(&mut self, client_id: &str, user: User) -> Result<User, UserError> {
        let app = self.apps.get(client_id).ok_or(UserError::UnknownApp)?;
        if app.kind != super::AppKind::Oauth {
            return Err(UserError::NotAnOauthApp);
        }
        let own = app.own_user();
        let registered = self.users.entry(client_id.to_owned()).or_default();
        for existing in std::iter::once(&own).chain(registered.iter()) {
            if existing.user_id == user.user_id {
                return Err(UserError::Duplicate(format!("user_id {:?}", user.user_id)));
            }
            if existing.email.eq_ignore_ascii_case(&user.email) {
                return Err(UserError::Duplicate(format!("email {:?}", user.email)));
            }
        }
        if registered.len() >= MAX_USERS_PER_APP {
            return Err(UserError::Full);
        }
        registered.push(user.clone());
        Ok(user)
    }

    /// The app's user with that id or email (any case).
    pub fn find_user(&self, client_id: &str, key: &str) -> Option<User> {
        self.users(client_id)?
            .into_iter()
            .find(|u| u.is_named_by(key))
    }

    /// The user with this id, or the app's own user when it is no longer known.
    pub(super) fn user_by_id(&self, client_id: &str, user_id: &str) -> Option<User> {
        let app = self.apps.get(client_id)?;
        Some(
            self.users
                .get(client_id)
                .and_then(|users| users.iter().find(|u| u.user_id == user_id))
                .cloned()
                .unwrap_or_else(|| app.own_user()),
        )
    }

    /// Makes `key` (a user id or email; None: the app's own user) the user who consents to
    /// the app's next authorizations that carry no `login_hint`.
    pub fn set_consenting_user(
        &mut self,
        client_id: &str,
        key: Option<&str>,
    ) -> Result<User, UserError> {
        let app = self.apps.get(client_id).ok_or(UserError::UnknownApp)?;
        let user = match key {
            None => app.own_user(),
            Some(key) => self
                .find_user(client_id, key)
                .ok_or_else(|| UserError::UnknownUser(key.to_owned()))?,
        };
        self.consenting
            .insert(client_id.to_owned(), user.user_id.clone());
        Ok(user)
    }

    /// Who consents to an authorization: the `login_hint` user, else the app's consenting user.
    pub(super) fn consenting_user(
        &self,
        client_id: &str,
        login_hint: Option<&str>,
    ) -> Result<User, UserError> {
        match login_hint {
            Some(key) => self
                .find_user(client_id, key)
                .ok_or_else(|| UserError::UnknownUser(key.to_owned())),
            None => {
                let chosen = self.consenting.get(client_id).cloned();
                let app = self.apps.get(client_id).ok_or(UserError::UnknownApp)?;
                Ok(chosen
                    .and_then(|id| self.user_by_id(client_id, &id))
                    .unwrap_or_else(|| app.own_user()))
            }
        }
    }
}
