//! `kumo.memoize`'s `invalidate_with_epoch = true` (KumoMTA: drop the cache
//! when the configuration epoch changes) is refused by name: Ironpost has
//! no configuration epoch. `false` (the default) is accepted.

mod common;

fn start(policy: &str) -> Result<(), String> {
    common::start(policy).map(|_| ())
}

#[test]
fn invalidate_with_epoch_true_is_refused() {
    let err = start(
        "local f = kumo.memoize(function(x) return x end, {\n  name = 'data', ttl = '5 minutes', capacity = 10, invalidate_with_epoch = true,\n})\n",
    )
    .unwrap_err();
    assert!(
        err.contains("invalidate_with_epoch")
            && err.contains("Ironpost does not support")
            && err.contains("policy.lua:1"),
        "{err}"
    );
}

#[test]
fn invalidate_with_epoch_false_or_absent_is_accepted() {
    for extra in ["", ", invalidate_with_epoch = false"] {
        start(&format!(
            "local f = kumo.memoize(function(x) return x * 2 end, {{ name = 'd', ttl = '1m', capacity = 2{extra} }})\nassert(f(2) == 4 and f(2) == 4)\n"
        ))
        .unwrap_or_else(|e| panic!("{extra}: {e}"));
    }
}
