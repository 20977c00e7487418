//! Arbitrary bytes as a config file: parsing, validation and the rendering of every
//! error (each carries `file:line:column`) must never panic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match gateway::config::from_str(Path::new("fuzz.toml"), text) {
        Ok(config) => {
            // Route labels are rendered into metrics: exercise them too.
            for rule in &config.rules {
                let _ = rule.label();
            }
        }
        Err(errors) => {
            assert!(!errors.is_empty(), "from_str returned Err with no errors");
            for error in &errors {
                let _ = error.to_string();
                let _ = gateway::error_chain(error);
                if let Some(at) = error.location() {
                    let _ = at.to_string();
                }
            }
        }
    }
});
