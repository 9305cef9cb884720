{#-
  Views with `security_invoker: true` in their config are created WITH (security_invoker = true):
  PostgreSQL (15+) then reads the underlying tables with the querying user's rights, so the
  row-level security of portfolio.* applies to a BI user reading the view. Created in the same
  statement, so no moment exists where the view reads with its owner's rights.
-#}
{% macro postgres__create_view_as(relation, sql) -%}
  {%- set sql_header = config.get('sql_header', none) -%}
  {%- set invoker = config.get('security_invoker', false) -%}
  {{ sql_header if sql_header is not none }}
  create view {{ relation.render() }}
    {%- if invoker %} with (security_invoker = true){% endif %}
    {% set contract_config = config.get('contract') %}
    {% if contract_config.enforced %}
      {{ get_assert_columns_equivalent(sql) }}
    {%- endif %}
  as (
    {{ sql }}
  );
{%- endmacro %}
