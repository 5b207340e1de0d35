//! The built-in connector types, in one list. Adding a connector is adding its crate under
//! `connectors/` and its plugins here.

use logbrook_connect::Registry;

/// Every connector type the `logbrook` binary can run.
pub fn registry() -> Registry {
    let mut plugins = Vec::new();
    plugins.extend(logbrook_connector_file::plugins());
    plugins.extend(logbrook_connector_postgres::plugins());
    plugins.extend(logbrook_connector_s3::plugins());
    Registry::new(plugins)
}
