"""Writes the chart's Grafana dashboards (helm/onwapp/files/dashboards/*.json).

`python3 helm/dashboards.py` after changing a panel here; tests/api/observability.rs checks that
every query evaluates against a real Prometheus scraping a cluster, and that every metric it
names is exported. Each dashboard has a `${datasource}` variable (Prometheus).
"""
import json, os
OUT=os.path.join(os.path.dirname(os.path.abspath(__file__)), 'onwapp', 'files', 'dashboards')
def panel(pid, title, exprs, kind='timeseries', unit=None, x=0, y=0, w=12, h=8, desc=''):
    targets=[{'refId': chr(65+i), 'expr': e, 'legendFormat': l, 'datasource': {'type':'prometheus','uid':'${datasource}'}} for i,(e,l) in enumerate(exprs)]
    p={'id':pid,'type':kind,'title':title,'description':desc,'datasource':{'type':'prometheus','uid':'${datasource}'},
       'gridPos':{'x':x,'y':y,'w':w,'h':h},'targets':targets,
       'fieldConfig':{'defaults':{'unit':unit or 'short'},'overrides':[]},'options':{}}
    if kind=='stat':
        p['options']={'reduceOptions':{'calcs':['lastNotNull'],'fields':'','values':False},'colorMode':'value','graphMode':'area'}
    return p
def dash(uid, title, rows, desc):
    panels=[]; pid=1; y=0
    for row in rows:
        x=0
        for (title_, exprs, kind, unit, w, d) in row:
            panels.append(panel(pid,title_,exprs,kind,unit,x,y,w,8 if kind!='stat' else 4,d)); pid+=1; x+=w
        y+= 8 if any(r[2]!='stat' for r in row) else 4
    return {'uid':uid,'title':title,'description':desc,'tags':['onwapp'],'timezone':'browser','schemaVersion':39,'version':1,
            'editable':True,'refresh':'30s','time':{'from':'now-6h','to':'now'},
            'templating':{'list':[{'name':'datasource','label':'Prometheus','type':'datasource','query':'prometheus','current':{},'hide':0,'refresh':1,'options':[]}]},
            'annotations':{'list':[]},'panels':panels}
T='timeseries'; S='stat'
dashboards={
'cluster': dash('onwapp-cluster','onwapp / Cluster',[
  [('Nodes answering',[('count(up{job=~".*onwapp.*"} == 1) or vector(0)','nodes')],S,None,4,'Nodes Prometheus scrapes'),
   ('Leaders',[('sum(onwapp_cluster_is_leader)','leaders')],S,None,4,'Nodes that lead the Raft group (1 when healthy)'),
   ('Leader id',[('max(onwapp_cluster_leader_id)','leader')],S,None,4,'The Raft leader'),
   ('Raft term',[('max(onwapp_cluster_raft_term)','term')],S,None,4,'Elections raise it'),
   ('Unassigned shards',[('max(onwapp_cluster_shards_unassigned)','unassigned')],S,None,4,'Shards whose sessions run nowhere (0 when healthy)'),
   ('Nodes ready',[('sum(onwapp_cluster_node_ready)','ready')],S,None,4,'Nodes passing GET /health/ready')],
  [('Shards per node',[('max by (node) (onwapp_cluster_node_shards)','node {{node}}')],T,None,12,'Shards each member owns (the map)'),
   ('Shards served per node',[('sum by (instance) (onwapp_cluster_shards_owned)','{{instance}}')],T,None,12,'Shards each node serves (map and lease)')],
  [('Shard moves',[('sum by (event) (rate(onwapp_cluster_shard_events_total[5m]))','{{event}}'),('max(onwapp_cluster_moves_in_flight)','in flight')],T,'ops',12,'Ownership events per second and planned handoffs in progress'),
   ('Lease left',[('min by (instance) (onwapp_cluster_lease_remaining_seconds)','{{instance}}')],T,'s',12,'Local lease validity left on each node')],
  [('Lease losses',[('sum by (instance) (increase(onwapp_cluster_lease_losses_total[1h]))','{{instance}}')],T,None,12,'A healthy node never loses its lease'),
   ('Raft apply lag',[('max by (instance) (onwapp_cluster_raft_last_log_index - onwapp_cluster_last_applied_index)','{{instance}}')],T,None,12,'Log entries received but not applied yet')],
 ],'The Raft shard map: nodes, leader, shards per node, moves and leases'),
'sessions': dash('onwapp-sessions','onwapp / Sessions',[
  [('Connected sessions',[('sum(onwapp_sessions{state="connected"})','connected')],S,None,6,''),
   ('Connecting sessions',[('sum(onwapp_sessions{state="connecting"})','connecting')],S,None,6,''),
   ('Logouts (1h)',[('sum(increase(onwapp_whatsapp_connection_events_total{event="logged_out"}[1h]))','logouts')],S,None,6,''),
   ('Disconnects (1h)',[('sum(increase(onwapp_whatsapp_connection_events_total{event="disconnected"}[1h]))','disconnects')],S,None,6,'')],
  [('Sessions by state',[('sum by (state) (onwapp_sessions)','{{state}}')],T,None,12,'Sessions whose client runs in the cluster'),
   ('Sessions per node',[('sum by (instance) (onwapp_sessions{state="connected"})','{{instance}}')],T,None,12,'Connected sessions on each node')],
  [('Connection events',[('sum by (event) (rate(onwapp_whatsapp_connection_events_total[5m]))','{{event}}')],T,'ops',24,'Connected after disconnected is a reconnect')],
 ],'WhatsApp sessions: states, reconnects, logouts'),
'traffic': dash('onwapp-traffic','onwapp / Traffic',[
  [('Requests by status',[('sum by (status) (rate(onwapp_http_requests_total[5m]))','{{status}}')],T,'reqps',12,'Client requests (a forwarded request counted once, where it entered)'),
   ('Latency',[('histogram_quantile(0.5, sum by (le) (rate(onwapp_http_request_duration_seconds_bucket[5m])))','p50'),('histogram_quantile(0.99, sum by (le) (rate(onwapp_http_request_duration_seconds_bucket[5m])))','p99')],T,'s',12,'As clients see it')],
  [('Busiest routes',[('topk(10, sum by (method, route) (rate(onwapp_http_requests_total[5m])))','{{method}} {{route}}')],T,'reqps',12,''),
   ('Forwards',[('sum by (outcome) (rate(onwapp_cluster_forwards_total[5m]))','{{outcome}}')],T,'ops',12,'Requests sent on to the owner of their session')],
  [('429s',[('sum(rate(onwapp_http_requests_total{status="429"}[5m]))','429'),('sum by (decision) (rate(onwapp_ratelimit_decisions_total[5m]))','{{decision}}')],T,'reqps',12,'Rate-limit decisions'),
   ('Redis fallback',[('max by (instance) (onwapp_ratelimit_redis_fallback)','{{instance}}')],T,None,12,'1 while a node limits on its own (Redis unreachable)')],
 ],'HTTP requests, latency, forwarding hops and rate limits'),
'webhooks': dash('onwapp-webhooks','onwapp / Webhooks',[
  [('Queue depth',[('max(onwapp_webhook_queue_depth)','pending')],S,None,8,'Events waiting for delivery'),
   ('Dead letters',[('max(onwapp_webhook_dead_letters)','dead')],S,None,8,'Events given up on (replay them with POST /<session>/webhook/replay)'),
   ('Deliveries (5m)',[('sum(increase(onwapp_webhook_attempts_total{outcome="delivered"}[5m]))','delivered')],S,None,8,'')],
  [('Depth over time',[('max(onwapp_webhook_queue_depth)','pending'),('max(onwapp_webhook_dead_letters)','dead')],T,None,12,''),
   ('Attempts by outcome',[('sum by (outcome) (rate(onwapp_webhook_attempts_total[5m]))','{{outcome}}')],T,'ops',12,'')],
  [('Delivery latency',[('histogram_quantile(0.5, sum by (le) (rate(onwapp_webhook_delivery_latency_seconds_bucket[5m])))','p50'),('histogram_quantile(0.99, sum by (le) (rate(onwapp_webhook_delivery_latency_seconds_bucket[5m])))','p99')],T,'s',24,'From enqueue to delivery')],
 ],'Webhook outbox: depth, latency, outcomes, dead letters'),
'whatsapp': dash('onwapp-whatsapp','onwapp / WhatsApp',[
  [('Sends by type',[('sum by (type) (rate(onwapp_whatsapp_messages_sent_total[5m]))','{{type}}')],T,'ops',12,''),
   ('Sends by outcome',[('sum by (outcome) (rate(onwapp_whatsapp_messages_sent_total[5m]))','{{outcome}}')],T,'ops',12,'')],
  [('Received by type',[('sum by (type) (rate(onwapp_whatsapp_messages_received_total[5m]))','{{type}}')],T,'ops',12,''),
   ('Receive lag',[('histogram_quantile(0.5, sum by (le) (rate(onwapp_whatsapp_receive_lag_seconds_bucket[5m])))','p50'),('histogram_quantile(0.99, sum by (le) (rate(onwapp_whatsapp_receive_lag_seconds_bucket[5m])))','p99')],T,'s',12,'From WhatsApp timestamp to stored here')],
  [('Received by outcome',[('sum by (outcome) (rate(onwapp_whatsapp_messages_received_total[5m]))','{{outcome}}')],T,'ops',12,'failed: not stored, left unacknowledged for WhatsApp to deliver again'),
   ('Database up',[('min by (instance) (onwapp_database_up)','{{instance}}')],T,None,12,'')],
 ],'Messages sent and received by type and outcome'),
}
for name,d in dashboards.items():
    with open(os.path.join(OUT,name+'.json'),'w') as f:
        json.dump(d,f,indent=2); f.write('\n')
print('ok')
