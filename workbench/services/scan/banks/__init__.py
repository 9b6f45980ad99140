"""Hash-match banks (as Meta's Hasher-Matcher-Actioner names them): lists of known content, the
signals that find it again (`signals`), the index that searches them (`index`), the store that
writes them (`store`) and the matcher a scan calls (`match`)."""
