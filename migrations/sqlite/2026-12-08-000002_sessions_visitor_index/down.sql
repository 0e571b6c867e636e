DROP INDEX sessions_visitor_id;
