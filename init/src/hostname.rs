//! Guest hostname: validation (pure) and `sethostname(2)`.

/// Used when `hull.hostname` is absent or invalid.
pub const DEFAULT_HOSTNAME: &str = "hull";
/// Linux `HOST_NAME_MAX`.
pub const MAX_LEN: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostnameError {
    #[error("hostname is empty")]
    Empty,
    #[error("hostname is {0} bytes long, the maximum is {MAX_LEN}")]
    TooLong(usize),
    #[error("hostname contains {0:?}; only A-Z, a-z, 0-9, '-' and '.' are allowed")]
    BadChar(char),
    #[error("sethostname failed: {0}")]
    Set(rustix::io::Errno),
}

/// Accepts 1..=64 characters from `[A-Za-z0-9.-]`.
pub fn validate(name: &str) -> Result<(), HostnameError> {
    if name.is_empty() {
        return Err(HostnameError::Empty);
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '.'))
    {
        return Err(HostnameError::BadChar(c));
    }
    if name.len() > MAX_LEN {
        return Err(HostnameError::TooLong(name.len()));
    }
    Ok(())
}

/// Validates and sets the kernel hostname of the current UTS namespace.
pub fn set(name: &str) -> Result<(), HostnameError> {
    validate(name)?;
    rustix::system::sethostname(name.as_bytes()).map_err(HostnameError::Set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_names() {
        for name in ["hull", "a", "sandbox-1.example.org", "0", &"x".repeat(64)] {
            assert_eq!(validate(name), Ok(()), "{name}");
        }
        assert_eq!(validate(DEFAULT_HOSTNAME), Ok(()));
    }

    #[test]
    fn rejects_invalid_names() {
        assert_eq!(validate(""), Err(HostnameError::Empty));
        assert_eq!(validate(&"x".repeat(65)), Err(HostnameError::TooLong(65)));
        assert_eq!(validate("a b"), Err(HostnameError::BadChar(' ')));
        assert_eq!(validate("a_b"), Err(HostnameError::BadChar('_')));
        assert_eq!(validate("a/b"), Err(HostnameError::BadChar('/')));
        assert_eq!(validate("a\0"), Err(HostnameError::BadChar('\0')));
        assert_eq!(validate("hé"), Err(HostnameError::BadChar('é')));
        assert_eq!(validate("\"x\""), Err(HostnameError::BadChar('"')));
    }
}
