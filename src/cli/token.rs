//! `kraftd new-token`: a random bearer token for the API, and the principals-file entry
//! that keeps only its SHA-256.

use crate::api::auth::{token_sha256, Role};

/// The token and the `[[principal]]` entry for it, as printed.
pub fn new_token(name: &str, role: &str) -> Result<String, String> {
    if Role::parse(role).is_none() {
        return Err(format!(
            "role {role:?} is none of operator, reader, broker:<id>"
        ));
    }
    if name.is_empty() {
        return Err("the principal needs a name".into());
    }
    // 244 random bits from the OS generator behind uuid v4.
    let token: String = [uuid::Uuid::new_v4(), uuid::Uuid::new_v4()]
        .iter()
        .flat_map(|u| u.as_bytes().to_vec())
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(format!(
        "# token for {name} (keep it secret; send it as `Authorization: Bearer TOKEN`,\n\
         # or pass it to the CLI as --token / KRAFTD_TOKEN):\n\
         {token}\n\
         \n\
         # add to the principals file (auth_principals_file):\n\
         [[principal]]\n\
         name = {name:?}\n\
         role = {role:?}\n\
         token_sha256 = \"{}\"\n",
        token_sha256(&token)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_token_prints_an_entry_that_loads_and_never_the_token_in_it() {
        let text = new_token("alice", "operator").unwrap();
        let token = text.lines().nth(2).unwrap();
        assert_eq!(token.len(), 64);
        let entry = &text[text.find("[[principal]]").unwrap()..];
        assert!(!entry.contains(token));
        assert!(entry.contains(&token_sha256(token)));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        std::fs::write(&path, entry).unwrap();
        crate::api::auth::Principals::load(&path).unwrap();
        assert!(new_token("alice", "root").is_err());
    }
}
