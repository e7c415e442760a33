package backend

import (
	"context"
	"fmt"

	"github.com/gatehouse-edge/gatehouse/broker/queue"
	"github.com/gatehouse-edge/gatehouse/broker/store"
)

func openDynamo(ctx context.Context, table string, o Options) (store.Store, error) {
	return nil, fmt.Errorf("dynamodb store %q: not built yet", table)
}

func openSQS(ctx context.Context, url string, o Options) (queue.Queue, error) {
	return nil, fmt.Errorf("sqs queue %q: not built yet", url)
}
