pub fn format_source(s: &str) -> Result<String, String> {
    Ok(s.to_string())
}
