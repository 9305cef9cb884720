{#-
  Fails on any relation in `marts` that would show portfolio rows without row-level security:
  a view over portfolio.* without security_invoker, a materialized view over portfolio.* (cannot
  carry policies), or a table with a portfolio_id column and no row-level security.
-#}
-- depends_on: {{ ref('portfolio_performance') }}
with over_portfolio as (
    select distinct v.oid, v.relname, v.relkind, v.reloptions
    from pg_class as v
    join pg_namespace as vn on vn.oid = v.relnamespace and vn.nspname = 'marts'
    join pg_rewrite as r on r.ev_class = v.oid
    join pg_depend as d
        on d.classid = 'pg_rewrite'::regclass and d.objid = r.oid and d.refclassid = 'pg_class'::regclass
    join pg_class as t on t.oid = d.refobjid
    join pg_namespace as tn on tn.oid = t.relnamespace and tn.nspname = 'portfolio'
    where v.relkind in ('v', 'm')
)
select relname, 'materialized view over portfolio tables' as problem
from over_portfolio
where relkind = 'm'
union all
select relname, 'view over portfolio tables without security_invoker'
from over_portfolio
where relkind = 'v'
  and not coalesce(reloptions && array['security_invoker=true', 'security_invoker=on', 'security_invoker=1'], false)
union all
select c.relname, 'table with portfolio_id and no row-level security'
from pg_class as c
join pg_namespace as n on n.oid = c.relnamespace and n.nspname = 'marts'
join pg_attribute as a on a.attrelid = c.oid and a.attname = 'portfolio_id' and not a.attisdropped
where c.relkind in ('r', 'p') and not (c.relrowsecurity and c.relforcerowsecurity)
