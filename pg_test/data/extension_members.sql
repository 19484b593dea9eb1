-- pg_temp.members(): how many objects the extension has, and a digest of their definitions
-- (functions: result type, volatility, strictness, parallel safety, costs, arguments, body,
-- settings, privileges; operators: commutator, negator, function, estimators; types: category and
-- whether preferred, which decide how untyped literals resolve). Used by upgrade.sql
-- in each database it compares.
CREATE FUNCTION pg_temp.members() RETURNS TABLE (n bigint, digest text) LANGUAGE sql AS $$
  SELECT count(*), md5(string_agg(d, E'\n' ORDER BY d)) FROM (
    SELECT pg_describe_object(e.classid, e.objid, e.objsubid) || coalesce(' ' || (
             SELECT row(p.prorettype::regtype, p.provolatile, p.proisstrict, p.proparallel, p.procost, p.prorows,
                        p.proargnames, pg_get_expr(p.proargdefaults, 0), p.prosrc, p.probin, p.proconfig, p.proacl)::text
             FROM pg_proc p WHERE e.classid = 'pg_proc'::regclass AND p.oid = e.objid), '')
           || coalesce(' ' || (
             SELECT row(o.oprcom::regoperator, o.oprnegate::regoperator, o.oprcode::regproc, o.oprrest, o.oprjoin)::text
             FROM pg_operator o WHERE e.classid = 'pg_operator'::regclass AND o.oid = e.objid), '')
           || coalesce(' ' || (
             SELECT row(t.typcategory, t.typispreferred)::text
             FROM pg_type t WHERE e.classid = 'pg_type'::regclass AND t.oid = e.objid), '') AS d
    FROM pg_depend e
    WHERE e.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'visual_search') AND e.deptype = 'e') s
$$;
