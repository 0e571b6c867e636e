-- Completes 2026-12-07-000003_country_codes, which matched lower(name):
-- lower() folds only ASCII letters on SQLite, and on PostgreSQL in a
-- database whose LC_CTYPE is C, so a name whose non-ASCII letter was
-- stored in upper case ("Åland Islands", "CURAÇAO") kept its name. Each
-- name that mapping holds has at most one non-ASCII letter, so its other
-- casings are all caught here: lower() of the name with that letter in
-- upper case. The storage test `the_country_migration_agrees_with_the_enricher`
-- checks the list against the enricher's names.
UPDATE sessions SET country = CASE lower(country)
    WHEN 'curaÇao' THEN 'CW'
    WHEN 'cÔte d''ivoire' THEN 'CI'
    WHEN 'saint barthÉlemy' THEN 'BL'
    WHEN 'tÜrkiye' THEN 'TR'
    WHEN 'Åland islands' THEN 'AX'
END
WHERE lower(country) IN ('curaÇao', 'cÔte d''ivoire', 'saint barthÉlemy', 'tÜrkiye', 'Åland islands');
