-- The names replaced by codes are not kept: nothing to undo.
SELECT 1;
