// Package dynamostore is the scale-out store backend: one DynamoDB table
// (aws-sdk-go-v2) holding instances, bindings, name claims, specs,
// publications and the revision counter, every state change a conditional
// write on a version attribute (no transactions: the emulators lack them).
// It must not import the broker's api, queue or worker packages.
//
// Table layout (string keys pk, sk):
//
//	inst#<id>  inst        instance: doc (JSON), ver, outbox, op_created
//	inst#<id>  bind#<bid>  binding:  doc, ver, outbox, op_created
//	name#<n>   claim       name claim: inst
//	spec#<n>   spec        spec: rev, alloc_at, inst, deleted, written_by, json
//	spec#<n>   pub         publication: rev, error, at
//	meta       revision    counter: rev (last allocated), at (unix ns)
package dynamostore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/gatehouse-edge/gatehouse/broker/store"
)

// SettleWindow bounds how long after its revision is allocated a spec
// write may land: a writer allocates a revision (one counter update), then
// writes the spec (a conditional put) within SettleWindow/2 or not at all.
// So every revision allocated more than SettleWindow ago has landed or
// never will, and the change-feed cursor only moves past those: recent
// writes may be returned again (consumers dedupe by name and revision),
// a late one is never skipped.
const SettleWindow = 5 * time.Second

// maxScanPages bounds every scan.
const maxScanPages = 10000

// Store is the DynamoDB store.
type Store struct {
	db    *dynamodb.Client
	table string
	now   func() time.Time
}

var _ store.Store = (*Store)(nil)

// New uses table through db (see EnsureTable to create it).
func New(db *dynamodb.Client, table string) *Store {
	return &Store{db: db, table: table, now: time.Now}
}

// SetClock replaces the clock (tests).
func (s *Store) SetClock(now func() time.Time) { s.now = now }

// Table is the table's name.
func (s *Store) Table() string { return s.table }

// Close is a no-op (the client holds no resources that need closing).
func (s *Store) Close() error { return nil }

// EnsureTable creates the table if it does not exist and waits until it
// is active (bounded by ctx and one minute).
func (s *Store) EnsureTable(ctx context.Context) error {
	_, err := s.db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: &s.table})
	var nf *types.ResourceNotFoundException
	if errors.As(err, &nf) {
		_, err = s.db.CreateTable(ctx, &dynamodb.CreateTableInput{
			TableName: &s.table,
			AttributeDefinitions: []types.AttributeDefinition{
				{AttributeName: aws.String("pk"), AttributeType: types.ScalarAttributeTypeS},
				{AttributeName: aws.String("sk"), AttributeType: types.ScalarAttributeTypeS},
			},
			KeySchema: []types.KeySchemaElement{
				{AttributeName: aws.String("pk"), KeyType: types.KeyTypeHash},
				{AttributeName: aws.String("sk"), KeyType: types.KeyTypeRange},
			},
			BillingMode: types.BillingModePayPerRequest,
		})
		var inUse *types.ResourceInUseException
		if err != nil && !errors.As(err, &inUse) {
			return s.fail("creating the table", err)
		}
	} else if err != nil {
		return s.fail("describing the table", err)
	}
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		out, err := s.db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: &s.table})
		if err == nil && out.Table.TableStatus == types.TableStatusActive {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("dynamodb table %s: not active after a minute", s.table)
}

func (s *Store) fail(what string, err error) error {
	return fmt.Errorf("dynamodb table %s: %s: %w", s.table, what, err)
}

// Ping checks the table answers.
func (s *Store) Ping(ctx context.Context) error {
	if _, err := s.db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: &s.table}); err != nil {
		return s.fail("ping", err)
	}
	return nil
}

func str(v string) types.AttributeValue { return &types.AttributeValueMemberS{Value: v} }
func num(n int64) types.AttributeValue {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(n, 10)}
}
func bin(b []byte) types.AttributeValue { return &types.AttributeValueMemberB{Value: b} }

func key(pk, sk string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{"pk": str(pk), "sk": str(sk)}
}

func getS(item map[string]types.AttributeValue, k string) string {
	if v, ok := item[k].(*types.AttributeValueMemberS); ok {
		return v.Value
	}
	return ""
}

func getN(item map[string]types.AttributeValue, k string) int64 {
	if v, ok := item[k].(*types.AttributeValueMemberN); ok {
		n, _ := strconv.ParseInt(v.Value, 10, 64)
		return n
	}
	return 0
}

func getB(item map[string]types.AttributeValue, k string) []byte {
	if v, ok := item[k].(*types.AttributeValueMemberB); ok {
		return v.Value
	}
	return nil
}

func getBool(item map[string]types.AttributeValue, k string) bool {
	if v, ok := item[k].(*types.AttributeValueMemberBOOL); ok {
		return v.Value
	}
	return false
}

func isCondFailed(err error) bool {
	var c *types.ConditionalCheckFailedException
	return errors.As(err, &c)
}

func (s *Store) get(ctx context.Context, pk, sk string) (map[string]types.AttributeValue, error) {
	out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{TableName: &s.table, Key: key(pk, sk), ConsistentRead: aws.Bool(true)})
	if err != nil {
		return nil, s.fail("reading "+pk+"/"+sk, err)
	}
	return out.Item, nil
}

// outboxOf is the outbox attribute: 1 in progress and not enqueued (the
// sweeper's work), 2 in progress and enqueued, 0 finished.
func outboxOf(op store.Operation) int64 {
	switch {
	case op.InProgress() && !op.Enqueued:
		return 1
	case op.InProgress():
		return 2
	}
	return 0
}

// putVersioned writes a JSON record conditionally on its version.
func (s *Store) putVersioned(ctx context.Context, pk, sk string, version int64, doc []byte, op store.Operation, what string, extra ...string) (int64, error) {
	next := version + 1
	item := key(pk, sk)
	item["doc"], item["ver"], item["outbox"], item["op_created"] = bin(doc), num(next), num(outboxOf(op)), num(op.CreatedAt.UnixNano())
	for i := 0; i+1 < len(extra); i += 2 { // extra numeric attributes: name, value
		item[extra[i]] = &types.AttributeValueMemberN{Value: extra[i+1]}
	}
	in := &dynamodb.PutItemInput{TableName: &s.table, Item: item}
	if version == 0 {
		in.ConditionExpression = aws.String("attribute_not_exists(pk)")
	} else {
		in.ConditionExpression = aws.String("ver = :v")
		in.ExpressionAttributeValues = map[string]types.AttributeValue{":v": num(version)}
	}
	if _, err := s.db.PutItem(ctx, in); err != nil {
		if isCondFailed(err) {
			return 0, fmt.Errorf("%s at version %d: %w", what, version, store.ErrConflict)
		}
		return 0, s.fail("writing "+what, err)
	}
	return next, nil
}

// GetInstance reads one instance.
func (s *Store) GetInstance(ctx context.Context, id string) (store.Instance, error) {
	var in store.Instance
	item, err := s.get(ctx, "inst#"+id, "inst")
	if err != nil {
		return in, err
	}
	if item == nil {
		return in, fmt.Errorf("instance %q: %w", id, store.ErrNotFound)
	}
	if err := json.Unmarshal(getB(item, "doc"), &in); err != nil {
		return in, s.fail(fmt.Sprintf("decoding instance %q", id), err)
	}
	in.Version = getN(item, "ver")
	return in, nil
}

// PutInstance writes in conditionally on in.Version.
func (s *Store) PutInstance(ctx context.Context, in store.Instance) (int64, error) {
	doc, err := json.Marshal(in)
	if err != nil {
		return 0, fmt.Errorf("encoding instance %q: %w", in.ID, err)
	}
	return s.putVersioned(ctx, "inst#"+in.ID, "inst", in.Version, doc, in.Op, fmt.Sprintf("instance %q", in.ID))
}

// GetBinding reads one binding.
func (s *Store) GetBinding(ctx context.Context, instanceID, id string) (store.Binding, error) {
	var b store.Binding
	item, err := s.get(ctx, "inst#"+instanceID, "bind#"+id)
	if err != nil {
		return b, err
	}
	if item == nil {
		return b, fmt.Errorf("binding %q of instance %q: %w", id, instanceID, store.ErrNotFound)
	}
	if err := json.Unmarshal(getB(item, "doc"), &b); err != nil {
		return b, s.fail(fmt.Sprintf("decoding binding %q", id), err)
	}
	b.Version = getN(item, "ver")
	return b, nil
}

// PutBinding writes b conditionally on b.Version.
func (s *Store) PutBinding(ctx context.Context, b store.Binding) (int64, error) {
	doc, err := json.Marshal(b)
	if err != nil {
		return 0, fmt.Errorf("encoding binding %q: %w", b.ID, err)
	}
	var extra []string
	if len(b.SealedKey) > 0 { // sealed_until: only on bindings holding a pending key
		extra = []string{"sealed_until", strconv.FormatInt(max(b.SealedUntil.UnixNano(), 1), 10)}
	}
	return s.putVersioned(ctx, "inst#"+b.InstanceID, "bind#"+b.ID, b.Version, doc, b.Op, fmt.Sprintf("binding %q", b.ID), extra...)
}

// ExpiredKeys scans for bindings whose pending key expired before before.
func (s *Store) ExpiredKeys(ctx context.Context, before time.Time, limit int) ([]store.Binding, error) {
	var out []store.Binding
	err := s.scan(ctx, &dynamodb.ScanInput{
		FilterExpression:          aws.String("sealed_until < :t"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":t": num(before.UnixNano())},
	}, "listing expired binding keys", func(item map[string]types.AttributeValue) error {
		var b store.Binding
		if err := json.Unmarshal(getB(item, "doc"), &b); err != nil {
			return s.fail("decoding a binding", err)
		}
		b.Version = getN(item, "ver")
		out = append(out, b)
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].SealedUntil.Before(out[j].SealedUntil) })
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// ListBindings queries the instance's partition.
func (s *Store) ListBindings(ctx context.Context, instanceID string) ([]store.Binding, error) {
	var out []store.Binding
	in := &dynamodb.QueryInput{
		TableName:              &s.table,
		KeyConditionExpression: aws.String("pk = :pk AND begins_with(sk, :b)"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":pk": str("inst#" + instanceID), ":b": str("bind#"),
		},
		ConsistentRead: aws.Bool(true),
	}
	for page := 0; page < maxScanPages; page++ {
		res, err := s.db.Query(ctx, in)
		if err != nil {
			return nil, s.fail(fmt.Sprintf("listing bindings of %q", instanceID), err)
		}
		for _, item := range res.Items {
			var b store.Binding
			if err := json.Unmarshal(getB(item, "doc"), &b); err != nil {
				return nil, s.fail("decoding a binding", err)
			}
			b.Version = getN(item, "ver")
			out = append(out, b)
		}
		if len(res.LastEvaluatedKey) == 0 {
			break
		}
		in.ExclusiveStartKey = res.LastEvaluatedKey
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// MarkEnqueued clears the outbox flag if opID is still current.
func (s *Store) MarkEnqueued(ctx context.Context, instanceID, bindingID, opID string) error {
	for range 10 {
		var err error
		if bindingID == "" {
			var in store.Instance
			if in, err = s.GetInstance(ctx, instanceID); err != nil {
				return err
			}
			if in.Op.ID != opID || in.Op.Enqueued {
				return nil
			}
			in.Op.Enqueued = true
			_, err = s.PutInstance(ctx, in)
		} else {
			var b store.Binding
			if b, err = s.GetBinding(ctx, instanceID, bindingID); err != nil {
				return err
			}
			if b.Op.ID != opID || b.Op.Enqueued {
				return nil
			}
			b.Op.Enqueued = true
			_, err = s.PutBinding(ctx, b)
		}
		if !errors.Is(err, store.ErrConflict) {
			return err
		}
	}
	return fmt.Errorf("marking operation %q enqueued: %w", opID, store.ErrConflict)
}

func (s *Store) scan(ctx context.Context, in *dynamodb.ScanInput, what string, f func(map[string]types.AttributeValue) error) error {
	in.TableName = &s.table
	in.ConsistentRead = aws.Bool(true)
	for page := 0; page < maxScanPages; page++ {
		res, err := s.db.Scan(ctx, in)
		if err != nil {
			return s.fail(what, err)
		}
		for _, item := range res.Items {
			if err := f(item); err != nil {
				return err
			}
		}
		if len(res.LastEvaluatedKey) == 0 {
			return nil
		}
		in.ExclusiveStartKey = res.LastEvaluatedKey
	}
	return fmt.Errorf("dynamodb table %s: %s: more than %d pages", s.table, what, maxScanPages)
}

// PendingOutbox scans for operations not yet enqueued.
func (s *Store) PendingOutbox(ctx context.Context, olderThan time.Time, limit int) ([]store.OutboxItem, error) {
	return s.inProgress(ctx, "outbox = :one", olderThan, limit)
}

// Overdue scans for in-progress operations created before createdBefore.
func (s *Store) Overdue(ctx context.Context, createdBefore time.Time, limit int) ([]store.OutboxItem, error) {
	return s.inProgress(ctx, "outbox >= :one", createdBefore, limit)
}

func (s *Store) inProgress(ctx context.Context, cond string, before time.Time, limit int) ([]store.OutboxItem, error) {
	var out []store.OutboxItem
	err := s.scan(ctx, &dynamodb.ScanInput{
		FilterExpression:          aws.String(cond + " AND op_created < :t"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":one": num(1), ":t": num(before.UnixNano())},
	}, "listing in-progress operations", func(item map[string]types.AttributeValue) error {
		var rec struct {
			InstanceID string          `json:"instance_id"`
			ID         string          `json:"id"`
			Op         store.Operation `json:"op"`
		}
		if err := json.Unmarshal(getB(item, "doc"), &rec); err != nil {
			return s.fail("decoding an outbox record", err)
		}
		it := store.OutboxItem{OpID: rec.Op.ID, CreatedAt: time.Unix(0, getN(item, "op_created"))}
		if getS(item, "sk") == "inst" {
			it.InstanceID = rec.ID
		} else {
			it.InstanceID, it.BindingID = rec.InstanceID, rec.ID
		}
		out = append(out, it)
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.Before(out[j].CreatedAt) })
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// ClaimName reserves name for instanceID.
func (s *Store) ClaimName(ctx context.Context, name, instanceID string) error {
	item := key("name#"+name, "claim")
	item["inst"] = str(instanceID)
	_, err := s.db.PutItem(ctx, &dynamodb.PutItemInput{
		TableName: &s.table, Item: item,
		ConditionExpression:       aws.String("attribute_not_exists(pk) OR inst = :i"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":i": str(instanceID)},
	})
	if isCondFailed(err) {
		holder := ""
		if it, gerr := s.get(ctx, "name#"+name, "claim"); gerr == nil {
			holder = getS(it, "inst")
		}
		return fmt.Errorf("name %q belongs to instance %q: %w", name, holder, store.ErrConflict)
	}
	if err != nil {
		return s.fail(fmt.Sprintf("claiming name %q", name), err)
	}
	return nil
}

// ReleaseName frees name if instanceID holds it.
func (s *Store) ReleaseName(ctx context.Context, name, instanceID string) error {
	_, err := s.db.DeleteItem(ctx, &dynamodb.DeleteItemInput{
		TableName: &s.table, Key: key("name#"+name, "claim"),
		ConditionExpression:       aws.String("inst = :i"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":i": str(instanceID)},
	})
	if err != nil && !isCondFailed(err) {
		return s.fail(fmt.Sprintf("releasing name %q", name), err)
	}
	return nil
}

func specFrom(item map[string]types.AttributeValue) store.StoredSpec {
	name := getS(item, "pk")
	if len(name) > 5 {
		name = name[5:]
	}
	sp := store.StoredSpec{Name: name, Revision: getN(item, "rev"), InstanceID: getS(item, "inst"),
		Deleted: getBool(item, "deleted"), WrittenBy: getS(item, "written_by")}
	if !sp.Deleted {
		sp.JSON = getB(item, "json")
	}
	return sp
}

// GetSpec returns the latest write of a spec.
func (s *Store) GetSpec(ctx context.Context, name string) (store.StoredSpec, error) {
	item, err := s.get(ctx, "spec#"+name, "spec")
	if err != nil {
		return store.StoredSpec{}, err
	}
	if item == nil {
		return store.StoredSpec{}, fmt.Errorf("spec %q: %w", name, store.ErrNotFound)
	}
	return specFrom(item), nil
}

// allocate takes the next store revision from the counter item.
func (s *Store) allocate(ctx context.Context) (int64, time.Time, error) {
	at := s.now()
	out, err := s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: &s.table, Key: key("meta", "revision"),
		UpdateExpression:          aws.String("ADD rev :one SET #at = :at"),
		ExpressionAttributeNames:  map[string]string{"#at": "at"},
		ExpressionAttributeValues: map[string]types.AttributeValue{":one": num(1), ":at": num(at.UnixNano())},
		ReturnValues:              types.ReturnValueUpdatedNew,
	})
	if err != nil {
		return 0, at, s.fail("allocating a store revision", err)
	}
	return getN(out.Attributes, "rev"), at, nil
}

// PutSpec allocates a revision, then writes the spec if it is still at
// prevRevision.
func (s *Store) PutSpec(ctx context.Context, sp store.StoredSpec, prevRevision int64) (int64, error) {
	rev, at, err := s.allocate(ctx)
	if err != nil {
		return 0, err
	}
	budget := SettleWindow/2 - s.now().Sub(at)
	if budget <= 0 {
		return 0, fmt.Errorf("dynamodb table %s: revision %d for spec %q was allocated more than %s ago; not writing it (retry)", s.table, rev, sp.Name, SettleWindow/2)
	}
	ctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()
	item := key("spec#"+sp.Name, "spec")
	item["rev"], item["alloc_at"], item["inst"], item["deleted"], item["written_by"] = num(rev), num(at.UnixNano()), str(sp.InstanceID), &types.AttributeValueMemberBOOL{Value: sp.Deleted}, str(sp.WrittenBy)
	if !sp.Deleted {
		item["json"] = bin(sp.JSON)
	}
	in := &dynamodb.PutItemInput{TableName: &s.table, Item: item}
	if prevRevision == 0 {
		in.ConditionExpression = aws.String("attribute_not_exists(pk)")
	} else {
		in.ConditionExpression = aws.String("rev = :p")
		in.ExpressionAttributeValues = map[string]types.AttributeValue{":p": num(prevRevision)}
	}
	if _, err := s.db.PutItem(ctx, in); err != nil {
		if isCondFailed(err) {
			return 0, fmt.Errorf("spec %q is no longer at revision %d: %w", sp.Name, prevRevision, store.ErrConflict)
		}
		return 0, s.fail(fmt.Sprintf("writing spec %q", sp.Name), err)
	}
	return rev, nil
}

// settled is the highest revision among specs allocated before the
// settle window, or every revision when nothing was allocated within it.
type feedScan struct {
	specs   []store.StoredSpec
	maxRev  int64
	settled int64
}

func (s *Store) scanFeed(ctx context.Context) (feedScan, error) {
	var f feedScan
	ctr, err := s.get(ctx, "meta", "revision")
	if err != nil {
		return f, err
	}
	horizon := s.now().Add(-SettleWindow).UnixNano()
	expr := "sk = :spec"
	err = s.scan(ctx, &dynamodb.ScanInput{FilterExpression: &expr, ExpressionAttributeValues: map[string]types.AttributeValue{":spec": str("spec")}},
		"reading specs", func(item map[string]types.AttributeValue) error {
			sp := specFrom(item)
			f.specs = append(f.specs, sp)
			f.maxRev = max(f.maxRev, sp.Revision)
			if getN(item, "alloc_at") < horizon {
				f.settled = max(f.settled, sp.Revision)
			}
			return nil
		})
	if err != nil {
		return f, err
	}
	if getN(ctr, "at") < horizon { // no allocation in the window: all settled
		f.settled = f.maxRev
	}
	return f, nil
}

// Snapshot scans every spec. Its revision is the settled one (see
// SettleWindow), so a consumer resuming Changes from it misses nothing.
func (s *Store) Snapshot(ctx context.Context) (int64, []store.StoredSpec, error) {
	f, err := s.scanFeed(ctx)
	if err != nil {
		return 0, nil, err
	}
	live := make([]store.StoredSpec, 0, len(f.specs))
	for _, sp := range f.specs {
		if !sp.Deleted {
			live = append(live, sp)
		}
	}
	sort.Slice(live, func(i, j int) bool { return live[i].Name < live[j].Name })
	return f.settled, live, nil
}

// Changes returns every spec write above since, in revision order, and a
// cursor that only moves past settled revisions (see SettleWindow): a
// write from the last few seconds may be returned again; none is skipped.
func (s *Store) Changes(ctx context.Context, since int64) (int64, []store.StoredSpec, error) {
	f, err := s.scanFeed(ctx)
	if err != nil {
		return since, nil, err
	}
	var out []store.StoredSpec
	for _, sp := range f.specs {
		if sp.Revision > since {
			out = append(out, sp)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Revision < out[j].Revision })
	return max(since, f.settled), out, nil
}

// ReportPublished records the verdict unless a newer one is recorded.
func (s *Store) ReportPublished(ctx context.Context, name string, revision int64, perr error) error {
	msg := ""
	if perr != nil {
		msg = perr.Error()
	}
	return s.report(ctx, name, revision, msg, "")
}

// ReportPublishedNote records a revision published, with a note.
func (s *Store) ReportPublishedNote(ctx context.Context, name string, revision int64, note string) error {
	return s.report(ctx, name, revision, "", note)
}

func (s *Store) report(ctx context.Context, name string, revision int64, msg, note string) error {
	item := key("spec#"+name, "pub")
	item["rev"], item["error"], item["at"] = num(revision), str(msg), num(s.now().UnixNano())
	if note != "" { // items written before notes existed have none either
		item["note"] = str(note)
	}
	_, err := s.db.PutItem(ctx, &dynamodb.PutItemInput{
		TableName: &s.table, Item: item,
		ConditionExpression:       aws.String("attribute_not_exists(pk) OR rev <= :r"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":r": num(revision)},
	})
	if err != nil && !isCondFailed(err) {
		return s.fail(fmt.Sprintf("reporting revision %d of %q", revision, name), err)
	}
	return nil
}

// GetPublication reads the last report for a spec.
func (s *Store) GetPublication(ctx context.Context, name string) (store.Publication, error) {
	p := store.Publication{SpecName: name}
	item, err := s.get(ctx, "spec#"+name, "pub")
	if err != nil {
		return p, err
	}
	if item == nil {
		return p, fmt.Errorf("publication of %q: %w", name, store.ErrNotFound)
	}
	p.Revision, p.Error, p.Note, p.ReportedAt = getN(item, "rev"), getS(item, "error"), getS(item, "note"), time.Unix(0, getN(item, "at"))
	return p, nil
}
