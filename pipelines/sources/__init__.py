"""Sources kept in one folder each: reader, live client, assets and checks together."""
