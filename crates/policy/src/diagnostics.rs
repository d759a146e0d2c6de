//! `kumo.set_diagnostic_log_filter`: the daemon installs a hook that swaps
//! its diagnostic filter; policies change it at run time as in KumoMTA.

use std::sync::OnceLock;

type FilterHook = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

static HOOK: OnceLock<FilterHook> = OnceLock::new();

/// Called once by the binary with a function that applies an
/// `EnvFilter`-syntax directive string.
pub fn install_filter_hook(hook: FilterHook) {
    let _ = HOOK.set(hook);
}

/// KumoMTA's directives name its daemon's crate, `kumod`; Ironpost's
/// targets all start with `ironpost`, so `kumod=debug` means
/// `ironpost=debug`.
pub fn translate(filter: &str) -> String {
    filter
        .split(',')
        .map(|d| {
            let d = d.trim();
            match d.strip_prefix("kumod") {
                Some(rest) if rest.is_empty() || rest.starts_with(['=', ':', '[']) => {
                    format!("ironpost{rest}")
                }
                _ => d.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

pub fn set_filter(filter: &str) -> Result<(), String> {
    match HOOK.get() {
        Some(hook) => hook(&translate(filter)),
        None => Err("no diagnostic log to filter in this process".into()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn kumod_directives_name_ironpost() {
        assert_eq!(super::translate("kumod=debug"), "ironpost=debug");
        assert_eq!(
            super::translate("info, kumod::smtp_server=trace,kumodx=warn"),
            "info,ironpost::smtp_server=trace,kumodx=warn"
        );
    }
}
