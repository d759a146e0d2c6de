use std::path::PathBuf;

/// Errors loading a policy or running `init`. The message already names the
/// file and line where Lua knows them.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read policy {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("policy error: {0}")]
    Lua(String),
    #[error("policy error: {0}")]
    Config(String),
}

/// How an event handler ended, other than normally.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// `kumo.reject(code, text)`.
    #[error("rejected by policy: {code} {text}")]
    Reject { code: u16, text: String },
    /// A Lua error or a failure inside the engine.
    #[error("policy event failed: {0}")]
    Failed(String),
}

/// The value `kumo.reject` raises; found again by walking mlua's error chain.
#[derive(Debug, Clone)]
pub struct Rejection {
    pub code: u16,
    pub text: String,
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "kumo.reject({}, {:?})", self.code, self.text)
    }
}

impl std::error::Error for Rejection {}

fn find_rejection(e: &mlua::Error) -> Option<Rejection> {
    match e {
        mlua::Error::CallbackError { cause, .. } => find_rejection(cause),
        mlua::Error::WithContext { cause, .. } => find_rejection(cause),
        mlua::Error::ExternalError(ext) => ext.downcast_ref::<Rejection>().cloned(),
        _ => None,
    }
}

/// First `file.lua:N` position in a traceback, skipping C frames.
fn first_lua_location(traceback: &str) -> Option<String> {
    traceback
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("[C]"))
        .find_map(|l| {
            let i = l.find(".lua:")?;
            let digits: String = l[i + 5..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            (!digits.is_empty()).then(|| format!("{}{}", &l[..i + 5], digits))
        })
}

/// A one-line description of a Lua error with its policy location.
pub fn describe_lua_error(e: &mlua::Error) -> String {
    match e {
        mlua::Error::CallbackError { traceback, cause } => {
            let root = describe_lua_error(cause);
            match first_lua_location(traceback) {
                Some(loc) if !root.contains(&loc) => format!("{loc}: {root}"),
                _ => root,
            }
        }
        mlua::Error::WithContext { context, cause } => {
            format!("{context}: {}", describe_lua_error(cause))
        }
        mlua::Error::SyntaxError { message, .. } => message.clone(),
        mlua::Error::RuntimeError(m) => m.clone(),
        mlua::Error::ExternalError(ext) => ext.to_string(),
        other => other.to_string(),
    }
}

impl From<mlua::Error> for EventError {
    fn from(e: mlua::Error) -> EventError {
        match find_rejection(&e) {
            Some(r) => EventError::Reject {
                code: r.code,
                text: r.text,
            },
            None => EventError::Failed(describe_lua_error(&e)),
        }
    }
}
