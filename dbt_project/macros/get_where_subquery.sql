{#-
  dbt's hook for a data test's `where` config, overridden for one value: `where: session_window`
  (dbt_project.yml sets it for every test of the staging and mart models) tests only the rows of the
  run's session window, on the tested model's `session_date` column (`exposure_date` where it has
  that instead; no filter when it has neither, or when the run has no window). A daily run then
  checks the session it wrote instead of scanning ten years of bars in every test; what a window
  does not reach was tested by the run that wrote it, and `dbt test` by hand (no window) checks all.
  Any other `where` works as in dbt.
-#}
{% macro get_where_subquery(relation) -%}
    {%- set where = config.get('where', '') -%}
    {%- if where == 'session_window' -%}
        {%- set column = window_column_of_tested_model() -%}
        {%- set where = in_session_window(column) if column and session_window() is not none else '' -%}
    {%- endif -%}
    {%- if where -%}
        {%- set filtered -%}
            (select * from {{ relation }} where {{ where }}) dbt_subquery
        {%- endset -%}
        {%- do return(filtered) -%}
    {%- else -%}
        {%- do return(relation) -%}
    {%- endif -%}
{%- endmacro %}

{#- The date column a windowed test filters on: the tested model's documented session_date, else
    exposure_date, else none (a source, or a model with no session column). -#}
{% macro window_column_of_tested_model() -%}
    {%- set attached = model.get('attached_node') if model is mapping else none -%}
    {%- set node = graph.nodes.get(attached) if attached and execute else none -%}
    {%- set columns = (node.columns.keys() | list) if node else [] -%}
    {%- for candidate in ['session_date', 'exposure_date'] -%}
        {%- if candidate in columns -%}
            {%- do return(candidate) -%}
        {%- endif -%}
    {%- endfor -%}
    {%- do return(none) -%}
{%- endmacro %}
